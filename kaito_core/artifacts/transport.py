"""The OCI distribution API over HTTP: auth challenges, bounded retries and one-line errors.

Speaks the API directly with ``requests`` instead of through oras-py because the pull and push paths
need what oras-py 0.2 lacks: chunked PATCH uploads that stream from disk, Range requests to resume,
streaming digest verification, and retries bounded to a few short sleeps instead of oras-py's long
back-off. ``requests`` (not httpx) because it streams a large blob at about curl's speed
(bench_artifacts.py), and it drops the Authorization header when a registry redirects a blob to
another host (a storage CDN).
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from kaito_core.artifacts import mediatypes
from kaito_core.artifacts.auth import CONFIG_HINT, Credentials, parse_challenge
from kaito_core.artifacts.errors import ArtifactError, connection_problem
from kaito_core.artifacts.reference import Reference, is_loopback
from kaito_core.artifacts.tokens import fetch_token

#: Sleeps between tries for 5xx answers and connection errors: 3 tries in all.
RETRY_DELAYS = (0.2, 0.5)
RETRY_STATUS = {429, 500, 502, 503, 504}
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
UPLOAD_CHUNK = 64 * 1024 * 1024
IO_BLOCK = 1024 * 1024

_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class RegistryClient:
    """One repository of one registry, for one operation (pull or push)."""

    def __init__(
        self,
        ref: Reference,
        *,
        credentials: Credentials | None = None,
        plain_http: bool = False,
        push: bool = False,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        pool_size: int = 8,
    ) -> None:
        if ref.is_layout:
            raise ValueError("RegistryClient needs a registry reference, not an OCI layout")
        self.ref = ref
        self.host = ref.api_host
        self.plain_http = plain_http or is_loopback(self.host)
        self.base = f"{'http' if self.plain_http else 'https'}://{self.host}"
        self.credentials = credentials
        self.scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        self.action = "push" if push else "pull"
        self.retry_delays = retry_delays
        self.timeout = timeout
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "kaito-artifacts"
        self._authorization: str | None = None
        self._auth_lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ requests

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.ref.repository}/{path}"

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        expected: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """Send a request, answering auth challenges and retrying 5xx/connection errors a bounded
        number of times (``retry=False``: once). ``body`` is a factory so a retry can send it again.
        A registry that stays unreachable or failing raises :class:`RegistryUnavailable`."""
        tries = len(self.retry_delays) + 1 if retry else 1
        authenticated_once = False
        attempt = 0
        while True:
            send_headers = dict(headers or {})
            if self._authorization:
                send_headers["Authorization"] = self._authorization
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers=send_headers,
                    data=body() if body is not None else None,
                    stream=stream,
                    timeout=self.timeout,
                    allow_redirects=True,
                )
            except requests.exceptions.Timeout:
                problem = "timed out"
            except requests.exceptions.SSLError:
                raise ArtifactError(
                    f"TLS handshake with registry {self.host} failed while {what} {self.ref}; "
                    "if it serves plain HTTP pass --plain-http, otherwise check its certificate"
                ) from None
            except requests.exceptions.ConnectionError as exc:
                problem = connection_problem(exc)
            else:
                if resp.status_code == 401 and not authenticated_once:
                    authenticated_once = True
                    challenge = resp.headers.get("WWW-Authenticate", "")
                    resp.close()
                    self._answer_challenge(challenge, what)
                    continue
                if resp.status_code in expected:
                    return resp
                if resp.status_code in RETRY_STATUS and attempt + 1 < tries:
                    resp.close()
                    time.sleep(self.retry_delays[attempt])
                    attempt += 1
                    continue
                raise self._status_error(resp, what, tries=attempt + 1)
            if attempt + 1 >= tries:
                raise RegistryUnavailable(
                    f"cannot reach registry {self.host} ({problem}, {tries} tries) while {what} {self.ref}; "
                    "check that the registry is running and the address is right"
                )
            time.sleep(self.retry_delays[attempt])
            attempt += 1

    def _status_error(self, resp: requests.Response, what: str, tries: int) -> ArtifactError:
        status = resp.status_code
        code = _registry_error_code(resp)
        resp.close()
        label = f"{status} {_REASONS.get(status, resp.reason or '')}".strip() + (f", {code}" if code else "")
        where = f"registry {self.host}"
        if status == 401:
            if self.credentials is None:
                return ArtifactError(
                    f"{where} requires authentication for {self.ref} ({label}); "
                    f"give credentials with {CONFIG_HINT}"
                )
            return ArtifactError(
                f"{where} rejected the credentials for {self.ref} ({label}); check the "
                f"username and password in {CONFIG_HINT}"
            )
        if status == 403:
            return ArtifactError(
                f"{where} denied {self.action} access to {self.ref} ({label}); the credentials "
                f"lack {self.action} permission on repository {self.ref.repository}"
            )
        if status == 404:
            return ArtifactError(
                f"{where} has no {what.split(' ')[-1] if ' ' in what else what} for {self.ref} "
                f"({label}); check the repository, tag and digest"
            )
        if status in RETRY_STATUS or status >= 500:
            return RegistryUnavailable(
                f"{where} failed while {what} {self.ref} ({label} after {tries} tries); "
                "the registry is unhealthy, try again later or check its logs"
            )
        return ArtifactError(f"{where} answered {label} while {what} {self.ref}")

    # ----------------------------------------------------------------------------- authentication

    def _answer_challenge(self, header: str, what: str) -> None:
        scheme, params = parse_challenge(header)
        with self._auth_lock:
            if scheme == "basic":
                if self.credentials is None:
                    raise ArtifactError(
                        f"registry {self.host} requires authentication for {self.ref} (401 "
                        f"Unauthorized); give credentials with {CONFIG_HINT}"
                    )
                pair = f"{self.credentials.username}:{self.credentials.password}".encode()
                self._authorization = "Basic " + base64.b64encode(pair).decode()
            elif scheme == "bearer" and params.get("realm"):
                token = fetch_token(
                    self._session, params, self.credentials, self.scope, self.plain_http, self.timeout,
                    registry=self.host, target=str(self.ref), action=what,
                )
                self._authorization = f"Bearer {token}"
            else:
                raise ArtifactError(
                    f"registry {self.host} answered 401 with an unsupported challenge "
                    f"{scheme or '(none)'!r} while {what} {self.ref}"
                )

    # ------------------------------------------------------------------------------ the API calls

    def get_manifest(self, target: str) -> tuple[bytes, str]:
        """Manifest bytes (exactly as served, so their digest can be checked) and media type."""
        resp = self.request(
            "GET",
            self.url(f"manifests/{target}"),
            what="fetching the manifest",
            headers={"Accept": mediatypes.ACCEPT_MANIFESTS},
        )
        return resp.content, resp.headers.get("Content-Type", "").split(";")[0].strip()

    def put_manifest(self, target: str, data: bytes, media_type: str) -> None:
        self.request(
            "PUT",
            self.url(f"manifests/{target}"),
            what="pushing the manifest",
            expected=(201,),
            headers={"Content-Type": media_type},
            body=lambda: data,
        )

    def blob_size(self, digest: str) -> int | None:
        """Size of a blob the registry has, or None (HEAD; lets push skip what is there)."""
        resp = self.request("HEAD", self.url(f"blobs/{digest}"), what="checking a blob", expected=(200, 404))
        resp.close()
        if resp.status_code == 404:
            return None
        return int(resp.headers.get("Content-Length", "-1"))

    def open_blob(self, digest: str, offset: int = 0) -> requests.Response:
        """A streaming response for a blob, from ``offset`` (206) or whole (200)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.request(
            "GET",
            self.url(f"blobs/{digest}"),
            what="downloading a blob",
            expected=(200, 206),
            headers=headers,
            stream=True,
        )

    def upload_bytes(self, data: bytes, digest: str) -> None:
        location = self._start_upload()
        self.request(
            "PUT",
            _with_digest(location, digest),
            what="uploading a blob",
            expected=(201,),
            headers={"Content-Type": "application/octet-stream"},
            body=lambda: data,
        )

    def upload_file(
        self,
        path: Path,
        digest: str,
        size: int,
        *,
        chunk_size: int = UPLOAD_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Chunked upload: POST, then one PATCH per chunk streamed from disk, then PUT ?digest=.

        A PATCH that fails on the way (connection lost, 5xx) is retried after asking the registry how
        much it holds (GET on the upload URL): from there when it matches the chunk start, else from a
        new upload session (distribution refuses to resume an upload whose size moved under it).
        """
        reported = 0  # bytes shown on the progress bar, so a resent chunk is not counted twice

        def advance(position: int) -> None:
            nonlocal reported
            if progress is not None and position > reported:
                progress(position - reported)
                reported = position

        location = self._start_upload()
        offset = 0
        failures = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            sent = _Position(offset, advance)
            try:
                resp = self.request(
                    "PATCH",
                    location,
                    what="uploading a blob",
                    expected=(202,),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + length - 1}",
                        "Content-Length": str(length),
                    },
                    body=functools.partial(_FileSlice, path, offset, length, sent.add),
                    retry=False,
                )
            except RegistryUnavailable:
                failures += 1
                if failures > len(self.retry_delays):
                    raise
                time.sleep(self.retry_delays[failures - 1])
                if self._upload_offset(location) != offset:
                    location, offset = self._start_upload(), 0
                continue
            location = urljoin(location, resp.headers.get("Location", location))
            resp.close()
            offset += length
        self.request(
            "PUT",
            _with_digest(location, digest),
            what="uploading a blob",
            expected=(201,),
            headers={"Content-Length": "0"},
        )

    def _upload_offset(self, location: str) -> int | None:
        """How many bytes an upload session holds (``Range: 0-N`` -> N + 1), or None when unknown."""
        try:
            resp = self.request("GET", location, what="checking an upload", expected=(204,))
        except ArtifactError:
            return None
        value = resp.headers.get("Range", "")
        resp.close()
        try:
            return int(value.rsplit("-", 1)[1]) + 1 if value else 0
        except (IndexError, ValueError):
            return None

    def _start_upload(self) -> str:
        resp = self.request("POST", self.url("blobs/uploads/"), what="starting an upload", expected=(202,))
        location = resp.headers.get("Location")
        resp.close()
        if not location:
            raise ArtifactError(
                f"registry {self.host} started an upload for {self.ref} without a Location header"
            )
        return urljoin(self.base + "/", location)


class RegistryUnavailable(ArtifactError):
    """The registry could not be reached, or kept answering 5xx/429: worth retrying later."""


class _Position:
    """Tracks the absolute file position of a streamed chunk and reports it."""

    def __init__(self, start: int, report: Callable[[int], None]) -> None:
        self.position, self.report = start, report

    def add(self, n: int) -> None:
        self.position += n
        self.report(self.position)


class _FileSlice:
    """A request body that streams ``length`` bytes of a file from ``offset`` in 1 MiB blocks.

    It has ``__len__`` (so requests sends Content-Length) and ``__iter__`` but no ``read``, so urllib3
    sends it block by block: the file is never read whole into memory.
    """

    def __init__(self, path: Path, offset: int, length: int, progress: Callable[[int], None] | None) -> None:
        self.path, self.offset, self.length, self.progress = path, offset, length, progress

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        remaining = self.length
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            while remaining:
                block = handle.read(min(IO_BLOCK, remaining))
                if not block:
                    raise ArtifactError(
                        f"{self.path} shrank while it was being uploaded; do not modify it during a push"
                    )
                remaining -= len(block)
                if self.progress is not None:
                    self.progress(len(block))
                yield block


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _registry_error_code(resp: requests.Response) -> str:
    """The distribution error code (MANIFEST_UNKNOWN, DENIED...), never the free-text detail."""
    if resp.request is not None and resp.request.method == "HEAD":
        return ""
    try:
        errors = resp.json().get("errors") or []
        code = errors[0].get("code", "") if errors else ""
        return code if isinstance(code, str) and code.replace("_", "").isalnum() else ""
    except (ValueError, AttributeError, IndexError, requests.exceptions.RequestException):
        return ""
