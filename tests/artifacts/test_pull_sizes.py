"""A manifest's declared layer sizes are held to the blobs they name, against the real registry; and a
partial file damaged on this machine is fetched again in the same pull, never blamed on the registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from kaito_core.artifacts import ArtifactError, pull, push
from kaito_core.artifacts.cache import BlobCache

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _retag_with_size(registry: Any, repo: str, tag: str, new_tag: str, name: str, size: int) -> str:
    """Put the manifest of ``tag`` under ``new_tag`` with layer ``name`` declaring ``size`` bytes."""
    base = f"http://{registry.host}/v2/{repo}/manifests"
    manifest = requests.get(f"{base}/{tag}", headers={"Accept": MANIFEST}, timeout=30).json()
    layer = next(
        entry
        for entry in manifest["layers"]
        if entry["annotations"]["org.opencontainers.image.title"] == name
    )
    layer["size"] = size
    put = requests.put(f"{base}/{new_tag}", data=json.dumps(manifest), headers={"Content-Type": MANIFEST},
                       timeout=30)  # fmt: skip
    assert put.status_code == 201, put.text
    return str(layer["digest"])


@pytest.fixture
def small(tmp_path: Path) -> Path:
    model = tmp_path / "small"
    model.mkdir()
    (model / "config.json").write_text('{"ab": 1}')  # 9 bytes
    return model


def test_a_layer_declared_smaller_than_its_blob_fails(
    registry: Any, small: Path, repo: str, tmp_path: Path
) -> None:
    # a 6-byte declaration took the 9-byte blob, with exit 0
    push(small, f"{registry.host}/{repo}:v1", progress=False)
    _retag_with_size(registry, repo, "v1", "short", "config.json", 6)
    with pytest.raises(ArtifactError, match=r"config.json .* is 9 bytes in registry .* declares 6"):
        pull(f"{registry.host}/{repo}:short", tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "out" / "config.json").exists()


def test_a_layer_declared_larger_never_evicts_the_good_cached_blob(
    registry: Any, small: Path, repo: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    push(small, f"{registry.host}/{repo}:v1", progress=False)
    pull(f"{registry.host}/{repo}:v1", tmp_path / "good", cache_dir=cache, progress=False)
    digest = _retag_with_size(registry, repo, "v1", "long", "config.json", 12)
    with pytest.raises(
        ArtifactError, match=r"declares 12 bytes .* verified blob with that digest is 9 bytes"
    ):
        pull(f"{registry.host}/{repo}:long", tmp_path / "out", cache_dir=cache, progress=False)
    assert BlobCache(cache).lookup(digest, 9) is not None  # still there, still good
    fresh = tmp_path / "fresh-cache"  # and without the cache: the registry's size is compared
    with pytest.raises(ArtifactError, match=r"is 9 bytes in registry .* declares 12"):
        pull(f"{registry.host}/{repo}:long", tmp_path / "out2", cache_dir=fresh, progress=False)


def test_a_damaged_partial_is_discarded_and_fetched_again(
    registry: Any, model_dir: Path, repo: str, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{repo}:v1"
    push(model_dir, ref, progress=False)
    data = (model_dir / "model.safetensors").read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    cache = BlobCache(tmp_path / "cache")
    damaged = bytearray(data[: len(data) // 2])  # an interrupted pull's partial file, then damaged here
    damaged[10] ^= 0xFF
    cache.partial_path(digest).write_bytes(bytes(damaged))
    result = pull(ref, tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == data
    assert result.bytes_downloaded >= len(data)
    assert not cache.partial_path(digest).exists()
