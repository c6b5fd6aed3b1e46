"""Weights verified before serving: a blob is hashed once, then trusted while its size, mtime, inode and
device are unchanged; a mismatch names the file and drops the blob."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kaito_core.artifacts import verify
from kaito_core.artifacts.verify import WeightsCorrupted, verify_blob


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str, int]:
    data = os.urandom(64 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = tmp_path / "blobs" / digest.split(":")[1]
    path.parent.mkdir()
    path.write_bytes(data)
    return path, digest, len(data)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = verify.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(verify, "sha256_file", counting)
    return calls


def test_a_verified_blob_is_trusted_until_it_changes(
    blob: tuple[Path, str, int], hashes: list[Path], tmp_path: Path
) -> None:
    path, digest, size = blob
    markers = tmp_path / "verified"
    verify_blob(path, digest, size, "model.gguf", markers=markers)
    verify_blob(path, digest, size, "model.gguf", markers=markers)
    assert len(hashes) == 1  # the second start is a stat, not a hash
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: hashed again
    verify_blob(path, digest, size, "model.gguf", markers=markers)
    assert len(hashes) == 2
    verify_blob(path, digest, size, "model.gguf", markers=markers, full=True)
    assert len(hashes) == 3


def test_bytes_flipped_in_place_are_caught_and_the_blob_dropped(
    blob: tuple[Path, str, int], tmp_path: Path
) -> None:
    path, digest, size = blob
    markers = tmp_path / "verified"
    verify_blob(path, digest, size, "model.gguf", markers=markers)
    with open(path, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 4096)
    with pytest.raises(WeightsCorrupted, match=r"model.gguf: the weights are corrupted") as caught:
        verify_blob(path, digest, size, "model.gguf", markers=markers)
    assert caught.value.name == "model.gguf" and digest in str(caught.value)
    assert not path.exists()
    assert not list(markers.iterdir())


def test_a_copy_over_the_blob_has_a_new_inode_and_is_hashed(
    blob: tuple[Path, str, int], tmp_path: Path
) -> None:
    path, digest, size = blob
    markers = tmp_path / "verified"
    verify_blob(path, digest, size, "model.gguf", markers=markers)
    other = tmp_path / "other"
    other.write_bytes(b"\0" * size)
    stat = path.stat()
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime, other inode
    os.replace(other, path)
    with pytest.raises(WeightsCorrupted):
        verify_blob(path, digest, size, "model.gguf", markers=markers)


def test_a_wrong_size_is_refused_without_hashing(
    blob: tuple[Path, str, int], hashes: list[Path], tmp_path: Path
) -> None:
    path, digest, _ = blob
    with pytest.raises(WeightsCorrupted, match="not the 10 its manifest declares"):
        verify_blob(path, digest, 10, "model.gguf", markers=tmp_path / "verified")
    assert hashes == [] and not path.exists()
