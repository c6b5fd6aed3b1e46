"""The pull record: ``DEST/.kaito-pull.json`` says which artifact DEST holds, verified, so a pull of the
same reference into it (an inference pod restarted on its PersistentVolumeClaim) moves no bytes and
needs no registry.

A pull writes it last, after every file is verified and in place. It lists each file with its digest
and the (device, inode, size, mtime) it had then; a later pull trusts it only while every file still
has exactly those, else (or with ``--verify-cache``, which re-hashes the files) it pulls as usual.
Tags are taken as immutable here, as KAITO's preset images are: pin a digest to be sure.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kaito_core.artifacts.hashing import sha256_file

RECORD = ".kaito-pull.json"
VERSION = 1


def _identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns]


def write(dest: Path, reference: str, digest: str, files: Iterable[tuple[str, str, int]]) -> None:
    """Record that DEST holds ``reference`` (resolved to ``digest``): ``files`` are (name, sha256 digest,
    size), every one verified and in place."""
    record = {
        "version": VERSION,
        "reference": reference,
        "digest": digest,
        "files": [
            {"name": name, "digest": sha, "size": size, "identity": _identity(dest / name)}
            for name, sha, size in files
        ],
    }
    tmp = dest / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, dest / RECORD)


def clear(dest: Path) -> None:
    """Before files change in DEST: a stale record must never vouch for them."""
    with contextlib.suppress(FileNotFoundError):
        (dest / RECORD).unlink()


def verified(dest: Path, reference: str, digest: str | None, rehash: bool = False) -> dict[str, Any] | None:
    """The record when DEST holds ``reference`` (and ``digest``, when pinned) unchanged; else None."""
    try:
        record = json.loads((dest / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return None
    if record.get("reference") != reference:
        return None
    if digest and record.get("digest") != digest:
        return None
    try:
        for entry in record["files"]:
            path = dest / entry["name"]
            if rehash:
                if sha256_file(path) != entry["digest"]:
                    return None
            elif _identity(path) != entry["identity"]:
                return None
    except (OSError, KeyError, TypeError):
        return None
    return record
