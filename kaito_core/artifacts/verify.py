"""Weights checked against their digests before they are served, without re-hashing on every start.

:func:`verify_blob` hashes a content-addressed blob (its file name is its digest) and, when it matches,
writes a marker: the blob's size, mtime, inode and device at that moment. A later check trusts the
blob while all four are unchanged, so a start-up costs a ``stat``; anything that rewrites the file
(bytes flipped in place, a copy put over it) changes its mtime or inode, and the next check hashes it
again. A blob that does not match is removed where it lies (the store, the pull cache) and
:class:`WeightsCorrupted` names the file, so the next pull or pack fetches it again rather than
serving garbage.

Markers live in ``$KAITO_HOME/verified`` (not beside the blobs: a store may be read-only, and the
same digest may sit in several stores), one per blob file, keyed by digest, device and inode.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.hashing import sha256_file
from kaito_core.artifacts.paths import kaito_home


class WeightsCorrupted(ArtifactError):
    """A weights file does not match its digest (or its size); the blob was dropped."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


def markers_path() -> Path:
    return kaito_home() / "verified"


def verify_blob(path: Path, digest: str, size: int, name: str, *, full: bool = False,
                markers: Path | None = None) -> None:  # fmt: skip
    """Raise WeightsCorrupted (having removed ``path``) unless the blob at ``path`` is ``size`` bytes
    hashing to ``digest``. ``full`` re-hashes even when a marker vouches for the blob."""
    markers = markers_path() if markers is None else markers
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise WeightsCorrupted(
            f"{name}: its blob {path} is missing; pull or pack the weights again", name
        ) from None
    if stat.st_size != size:
        _drop(path)
        raise WeightsCorrupted(
            f"{name}: its blob {path} is {stat.st_size} bytes, not the {size} its manifest declares; "
            "the blob was removed: pull or pack the weights again",
            name,
        )
    marker = markers / _marker_name(digest, stat)
    if not full and _marker_matches(marker, stat):
        return
    actual = sha256_file(path)
    if actual != digest:
        _drop(path)
        with contextlib.suppress(OSError):
            marker.unlink()
        raise WeightsCorrupted(
            f"{name}: the weights are corrupted (its blob {path} hashes to {actual}, not {digest}); the "
            "blob was removed: pull or pack the weights again",
            name,
        )
    _write_marker(marker, path)


def _marker_name(digest: str, stat: os.stat_result) -> str:
    return f"{digest.partition(':')[2] or digest}.{stat.st_dev}.{stat.st_ino}.json"


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "device": stat.st_dev}


def _marker_matches(marker: Path, stat: os.stat_result) -> bool:
    try:
        return bool(json.loads(marker.read_text()) == _fingerprint(stat))
    except (OSError, ValueError):
        return False


def _write_marker(marker: Path, path: Path) -> None:
    # Best effort: without a writable KAITO_HOME every start hashes again, which is slower, not wrong.
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(_fingerprint(path.stat())))
        os.replace(tmp, marker)


def _drop(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
