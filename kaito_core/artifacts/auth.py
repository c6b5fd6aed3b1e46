"""Registry credentials: Docker ``config.json`` (a Kubernetes ``.dockerconfigjson``) and challenges.

Credentials are kept in :class:`Credentials`, whose ``repr`` hides the secret, so that a log line or
an exception that happens to print one cannot leak it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.reference import DOCKER_HUB, DOCKER_HUB_API

#: Where credentials come from, for messages that ask for them.
CONFIG_HINT = (
    "--registry-config FILE (Docker config.json or .dockerconfigjson), DOCKER_CONFIG or ~/.docker/config.json"
)


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # an OAuth2 refresh token (ACR, `docker login`)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


_HUB_ALIASES = {DOCKER_HUB, DOCKER_HUB_API, "index.docker.io", "registry.hub.docker.com"}


def normalize_host(key: str) -> str:
    """A config.json ``auths`` key or a registry host, as the bare ``host[:port]``."""
    host = re.sub(r"^[a-z]+://", "", key.strip()).split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def docker_config_paths(explicit: Sequence[str | Path] = ()) -> list[Path]:
    """The config files to read, most specific first: ``--registry-config`` files, then
    ``$DOCKER_CONFIG/config.json``, then ``~/.docker/config.json``."""
    paths = [Path(p).expanduser() for p in explicit]
    if os.environ.get("DOCKER_CONFIG"):
        paths.append(Path(os.environ["DOCKER_CONFIG"]).expanduser() / "config.json")
    paths.append(Path.home() / ".docker" / "config.json")
    return paths


def load_docker_config(path: Path) -> dict[str, Credentials]:
    """Credentials by host from one config.json / .dockerconfigjson file."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ArtifactError(f"cannot read registry config {path}: {exc.strerror}; check the path") from None
    except ValueError:
        raise ArtifactError(
            f"registry config {path} is not valid JSON; it must be a Docker config.json"
        ) from None
    if not isinstance(data, dict):
        raise ArtifactError(f"registry config {path} must hold a JSON object with an 'auths' map")
    auths = data.get("auths", {})
    if not isinstance(auths, dict):
        raise ArtifactError(f"registry config {path}: 'auths' must be a map of host to credentials")
    found: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise ArtifactError(f"registry config {path}: auths.{key} must be an object")
        found[normalize_host(key)] = _entry_credentials(entry, path, key)
    return found


def _entry_credentials(entry: dict[str, object], path: Path, key: str) -> Credentials:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    token = str(entry.get("identitytoken") or "")
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ArtifactError(
                f"registry config {path}: auths.{key}.auth is not base64 of 'user:password'"
            ) from None
        if ":" not in decoded:
            raise ArtifactError(f"registry config {path}: auths.{key}.auth must decode to 'user:password'")
        username, password = decoded.split(":", 1)
    return Credentials(username=username, password=password, identity_token=token)


def find_credentials(host: str, config_files: Iterable[Path]) -> Credentials | None:
    """The first credentials for ``host`` in the given files; missing default files are skipped."""
    wanted = normalize_host(host)
    for path in config_files:
        if not path.exists() and path.name == "config.json":
            continue  # the defaults ($DOCKER_CONFIG, ~/.docker) are optional; explicit files are not
        creds = load_docker_config(path).get(wanted)
        if creds is not None:
            return creds
    return None


_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` -> ("bearer", params)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM_RE.finditer(rest)
    }
    return scheme.lower(), params


def resolve_credentials(
    host: str,
    credentials: Credentials | tuple[str, str] | None = None,
    registry_configs: Sequence[str | Path] = (),
) -> Credentials | None:
    """Explicit credentials win; else the first matching entry of the Docker config files."""
    if isinstance(credentials, tuple):
        return Credentials(username=credentials[0], password=credentials[1])
    if credentials is not None:
        return credentials
    for path in registry_configs:
        if not Path(path).expanduser().is_file():
            raise ArtifactError(f"registry config {path} does not exist; check the --registry-config path")
    return find_credentials(host, docker_config_paths(registry_configs))
