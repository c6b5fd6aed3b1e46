"""Reading a tar layer without trusting it: the stream decompressed by its magic bytes, every member's
name and type checked, the uncompressed bytes hashed (a layer's diff id, or oras's content digest).

Used by ``unpack``, which decides what of the checked members is written where.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kaito_core.artifacts.errors import ArtifactError

MAX_ENTRIES = 1_000_000
CHUNK = 1 << 20


class _Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        while self.read(CHUNK):
            pass
        return f"sha256:{self.hash.hexdigest()}"


@contextlib.contextmanager
def decompressed(blob: Path, where: str) -> Iterator[Any]:
    """The uncompressed tar stream of a layer blob, by its magic bytes (gzip, zstd or plain)."""
    with blob.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream
        elif magic == b"\x28\xb5\x2f\xfd":
            with _zstd_reader(raw, where) as stream:
                yield stream
        else:
            yield raw


@contextlib.contextmanager
def _zstd_reader(raw: IO[bytes], where: str) -> Iterator[Any]:
    try:
        import zstandard
    except ImportError:
        raise ArtifactError(
            f"{where} is zstd-compressed, and this Python has no zstd decompressor; install the "
            "`zstandard` package, or push the image with gzip layers (buildah push --compression-format "
            "gzip, docker buildx --output compression=gzip)"
        ) from None
    with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        yield stream


def normalize(name: str, where: str) -> str:
    """A member's path with ``./`` and trailing ``/`` removed; refuses what could land outside DEST."""
    if "\x00" in name or "\\" in name:
        raise ArtifactError(f"{where} has a member {name!r} with a NUL or backslash in its name; refusing it")
    if name.startswith("/"):
        raise ArtifactError(
            f"{where} has a member with an absolute path {name!r}; refusing it (nothing was written)"
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArtifactError(
            f"{where} has a member {name!r} that climbs out of the directory with '..'; refusing it "
            "(nothing was written)"
        )
    return "/".join(parts)


def member_kind(info: tarfile.TarInfo, path: str, where: str) -> str:
    if info.isdir():
        return "dir"
    if info.isreg():
        return "file"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    what = (
        "a device node" if info.ischr() or info.isblk() else "a fifo" if info.isfifo() else "a special file"
    )
    raise ArtifactError(f"{where} has {what} at {path!r}; refusing it (nothing was written)")


@dataclass
class Member:
    path: str
    index: int
    info: tarfile.TarInfo


def scan(blob: Path, where: str, expected_diff: str) -> list[Member]:
    """Every member's header (checked), hashing the whole uncompressed stream against ``expected_diff``."""
    members: list[Member] = []
    with decompressed(blob, where) as stream:
        hashing = _Hashing(stream)
        try:
            with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
                for index, info in enumerate(tar):
                    if index >= MAX_ENTRIES:
                        raise ArtifactError(f"{where} has more than {MAX_ENTRIES} entries; refusing it")
                    path = normalize(info.name, where)
                    member_kind(info, path, where)
                    members.append(Member(path, index, info))
            diff = hashing.drain()
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ArtifactError(f"{where} is not a readable tar archive ({exc}); re-push it") from None
    if expected_diff and diff != expected_diff:
        raise ArtifactError(
            f"{where}: its uncompressed content hashes to {diff}, not the {expected_diff} declared; the "
            "artifact is inconsistent, re-push it (nothing was written)"
        )
    return members
