"""``kaito data fetch``: tuning data from http(s) URLs into a directory, refusing internal addresses.

The tuning Job's init container runs it inside the user's cluster, so every hop is checked (SSRF):
the URL itself (``kaito_core.api.urls.url_problem``: http(s) only, no local, cluster or metadata host
names, no literal non-public address), then every address its host resolves to, then the same for
each redirect, which is followed by hand (at most ``MAX_REDIRECTS``). A failed download is retried
(``retries``, KAITO's data-downloader does 3) and written atomically (``.part``, then renamed).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests

from kaito_core.api.urls import _is_internal, url_problem
from kaito_core.artifacts.errors import ArtifactError

MAX_REDIRECTS = 5
CHUNK = 1 << 20
Resolver = Callable[[str], Sequence[str]]


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (all of them are checked, not only the first)."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except socket.gaierror as exc:
        raise ArtifactError(f"{host}: the name does not resolve ({exc})") from None


def check_url(url: str, resolver: Resolver = resolve) -> None:
    """Raise ArtifactError when ``url`` or any address of its host is not public."""
    problem = url_problem(url)
    if problem:
        raise ArtifactError(problem)
    host = (urlsplit(url).hostname or "").rstrip(".")
    for address in resolver(host):
        if _is_internal(ipaddress.ip_address(address.split("%", 1)[0])):
            raise ArtifactError(
                f"{url!r}: {host} resolves to a non-public address ({address}); use a public URL"
            )


def file_name(url: str, index: int) -> str:
    name = Path(unquote(urlsplit(url).path)).name
    return name if name and not name.startswith(".") else f"data-{index}"


def fetch(
    urls: Sequence[str],
    dest: Path,
    *,
    retries: int = 3,
    session: requests.Session | None = None,
    resolver: Resolver = resolve,
    timeout: float = 60.0,
    backoff: float = 2.0,
) -> list[Path]:
    """Download every URL into ``dest``; returns the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    http = session or requests.Session()
    written = []
    for index, url in enumerate(urls):
        target = dest / file_name(url, index)
        for attempt in range(1, retries + 1):
            try:
                _download(http, url, target, resolver, timeout)
                break
            except ArtifactError:
                raise  # a refused address does not become public by asking again
            except (requests.RequestException, OSError) as exc:
                if attempt == retries:
                    raise ArtifactError(f"{url}: download failed after {retries} attempts: {exc}") from None
                time.sleep(backoff * attempt)
        written.append(target)
    return written


def _download(http: requests.Session, url: str, target: Path, resolver: Resolver, timeout: float) -> None:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_url(current, resolver)
        with http.get(current, stream=True, allow_redirects=False, timeout=timeout) as resp:
            if resp.is_redirect or resp.status_code in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                if not location:
                    raise ArtifactError(f"{current}: a redirect without a Location")
                current = urljoin(current, location)
                continue
            if resp.status_code != 200:
                raise requests.HTTPError(f"HTTP {resp.status_code} from {current}")
            part = target.with_name(target.name + ".part")
            with part.open("wb") as out:
                for chunk in resp.iter_content(CHUNK):
                    out.write(chunk)
            os.replace(part, target)
            return
    raise ArtifactError(f"{url}: more than {MAX_REDIRECTS} redirects")
