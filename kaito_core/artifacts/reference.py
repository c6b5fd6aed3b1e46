"""Parsing artifact references: ``host[:port]/repo[:tag][@sha256:...]`` and ``oci:PATH[:TAG|@DIGEST]``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path

from kaito_core.artifacts.errors import ArtifactError

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPO_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
LAYOUT_PREFIX = "oci:"
DEFAULT_TAG = "latest"


def check_digest(digest: str, what: str = "digest") -> str:
    if not DIGEST_RE.match(digest):
        raise ArtifactError(
            f"invalid {what} {digest!r}: expected 'sha256:' followed by 64 lowercase hex digits"
        )
    return digest


@dataclass(frozen=True)
class Reference:
    """Where an artifact lives: a repository in a registry, or an OCI image layout directory."""

    registry: str  # "host[:port]"; "" for a layout
    repository: str  # "models/gemma"; "" for a layout
    tag: str | None = None
    digest: str | None = None
    layout: Path | None = None  # set for oci:PATH references

    @classmethod
    def parse(cls, text: str) -> Reference:
        text = text.strip()
        if not text:
            raise ArtifactError(
                "empty artifact reference; expected HOST/REPOSITORY[:TAG][@sha256:...] or oci:PATH:TAG"
            )
        if text.startswith(LAYOUT_PREFIX):
            return cls._parse_layout(text[len(LAYOUT_PREFIX) :], text)
        rest, digest = _split_digest(text)
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, rest if "/" in rest else f"library/{rest}"
        if not _HOST_RE.match(registry):
            raise ArtifactError(f"invalid registry host {registry!r} in reference {text!r}")
        for component in repository.split("/"):
            if not _REPO_COMPONENT_RE.match(component):
                raise ArtifactError(
                    f"invalid repository {repository!r} in reference {text!r}: use lowercase letters, "
                    "digits and separators (. _ -) between '/'"
                )
        if tag is not None and not _TAG_RE.match(tag):
            raise ArtifactError(
                f"invalid tag {tag!r} in reference {text!r}: use letters, digits, '_', '.', '-'"
            )
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    @classmethod
    def _parse_layout(cls, body: str, text: str) -> Reference:
        path, digest = _split_digest(body)
        tag = None
        colon = path.rfind(":")
        if colon > path.rfind("/"):
            path, tag = path[:colon], path[colon + 1 :]
            if not tag:
                raise ArtifactError(f"empty tag in {text!r}; write oci:PATH:TAG or oci:PATH@sha256:...")
            if "/" in tag or len(tag) > 255:
                raise ArtifactError(f"invalid tag {tag!r} in {text!r}")
        if not path:
            raise ArtifactError(f"missing directory in {text!r}; write oci:PATH:TAG")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry="", repository="", tag=tag, digest=digest, layout=Path(path).expanduser())

    @property
    def is_layout(self) -> bool:
        return self.layout is not None

    @property
    def target(self) -> str:
        """What to ask for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        base = (
            f"{LAYOUT_PREFIX}{self.layout}"
            if self.layout is not None
            else f"{self.registry}/{self.repository}"
        )
        if self.tag:
            base += f":{self.tag}"
        if self.digest:
            base += f"@{self.digest}"
        return base


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    rest, _, digest = text.rpartition("@")
    return rest, check_digest(digest, what=f"digest in reference {text!r}")


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
