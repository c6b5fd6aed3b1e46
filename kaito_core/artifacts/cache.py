"""The content-addressed blob cache: ``ROOT/sha256/<hex>`` + a verified marker per blob.

A blob enters the cache only after its digest was checked (renamed from ``ROOT/tmp/<hex>.partial``).
The marker records size, mtime and inode at that moment: a later pull trusts the blob when they still
match (cheap), and re-hashes it when they do not or when ``--verify-cache`` asks. Blobs are made
read-only because they are hardlinked into the directories pulls write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.hashing import sha256_file


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        try:
            for sub in ("sha256", "tmp", "verified"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(
                f"cannot create the blob cache at {self.root} ({exc.strerror}); pass a writable "
                "--cache-dir or set KAITO_HOME"
            ) from None

    def blob_path(self, digest: str) -> Path:
        return self.root / "sha256" / _hex(digest)

    def partial_path(self, digest: str) -> Path:
        return self.root / "tmp" / f"{_hex(digest)}.partial"

    def _marker_path(self, digest: str) -> Path:
        return self.root / "verified" / f"{_hex(digest)}.json"

    @contextlib.contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        """An exclusive lock per blob, so two pulls of the same blob never write one partial file."""
        with open(self.root / "tmp" / f"{_hex(digest)}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def lookup(self, digest: str, size: int, *, full: bool = False) -> Path | None:
        """The cached blob when it is intact, else None (a damaged entry is evicted)."""
        path = self.blob_path(digest)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if stat.st_size != size:
            if self._marker_matches(digest, stat):
                # Verified under this digest and unchanged since: the declaration is what is wrong, and
                # a good blob must not be thrown away for it.
                raise ArtifactError(
                    f"the manifest declares {size} bytes for blob {digest[:19]}, but the verified blob "
                    f"with that digest is {stat.st_size} bytes; fix the manifest (re-push the artifact)"
                )
            self.evict(digest)
            return None
        if not full and self._marker_matches(digest, stat):
            return path
        if sha256_file(path) != digest:
            self.evict(digest)
            return None
        self._write_marker(digest, path)
        return path

    def commit(self, partial: Path, digest: str) -> Path:
        """Move a verified partial file into the cache."""
        final = self.blob_path(digest)
        os.chmod(partial, 0o444)
        os.replace(partial, final)
        self._write_marker(digest, final)
        return final

    def adopt(self, source: Path, digest: str) -> Path | None:
        """Hardlink an already verified file (e.g. a store blob) into the cache; None across devices."""
        final = self.blob_path(digest)
        if final.exists():
            return final
        tmp = self.root / "tmp" / f"{_hex(digest)}.adopt.{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return None
            raise
        os.replace(tmp, final)
        self._write_marker(digest, final)
        return final

    def evict(self, digest: str) -> None:
        for path in (self.blob_path(digest), self._marker_path(digest)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _write_marker(self, digest: str, path: Path) -> None:
        stat = path.stat()
        marker = self._marker_path(digest)
        tmp = marker.with_suffix(f".tmp{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}))
        os.replace(tmp, marker)

    def _marker_matches(self, digest: str, stat: os.stat_result) -> bool:
        try:
            marker = json.loads(self._marker_path(digest).read_text())
        except (OSError, ValueError):
            return False
        return bool(marker == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino})


def _hex(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64:
        raise ArtifactError(f"unsupported digest {digest!r}; only sha256 is supported")
    return value
