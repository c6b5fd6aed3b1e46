"""Where `kaito run` gets the weights: the local store (symlinks to blobs) or a registry (hardlinks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_core.api import ARTIFACT_ANNOTATION
from kaito_core.artifacts import push
from kaito_core.artifacts.layout import OciLayout
from kaito_core.local.errors import LocalRunError
from kaito_core.local.prepare import prepare
from kaito_core.local.weights import model_path_for, read_layout
from kaito_core.plugins import default_registry


def _annotated(tmp_path: Path, example: Path, ref: str) -> Path:
    manifest = yaml.safe_load(example.read_text())
    manifest["metadata"]["annotations"] = {ARTIFACT_ANNOTATION: ref}
    path = tmp_path / "annotated.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_store_weights_are_linked_not_copied(stored_weights: Path, kit: Any, tmp_path: Path) -> None:
    prepared = prepare(kit.example, default_registry())
    model = model_path_for(prepared, tmp_path / "run", progress=False)
    assert model.name == "gemma-3-270m-q4_k_m.gguf"
    assert model.is_symlink() and model.resolve() == stored_weights.resolve()


def test_registry_artifact_is_pulled_once_and_hardlinked(
    stored_weights: Path, kit: Any, tmp_path: Path, registry: Any
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "gemma-3-270m-q4_k_m.gguf").symlink_to(stored_weights)
    ref = f"{registry.host}/kaito-run-tests/gemma-3-270m:q4-k-m"
    push(source, ref, format="gguf", quantization="Q4_K_M", progress=False)

    prepared = prepare(_annotated(tmp_path, kit.example, ref), default_registry())
    first = model_path_for(prepared, tmp_path / "run-1", progress=False)
    second = model_path_for(prepared, tmp_path / "run-2", progress=False)
    assert first.is_file() and not first.is_symlink()
    assert first.stat().st_size == stored_weights.stat().st_size
    # both runs' files are the same inode: the second pull came from the verified cache, no copy
    assert os.path.samefile(first, second)


def test_annotation_naming_a_missing_registry_artifact(kit: Any, tmp_path: Path, registry: Any) -> None:
    ref = f"{registry.host}/kaito-run-tests/does-not-exist:v1"
    prepared = prepare(_annotated(tmp_path, kit.example, ref), default_registry())
    with pytest.raises(LocalRunError, match=r"weights not found: could not pull .*does-not-exist:v1"):
        model_path_for(prepared, tmp_path / "run", progress=False)


def test_truncated_blob_in_a_layout_is_reported(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "tiny.gguf").write_bytes(b"GGUF" + bytes(2048))
    layout_dir = tmp_path / "layout"
    push(model, f"oci:{layout_dir}:v1", format="gguf", quantization="Q8_0", progress=False)
    layout = OciLayout(layout_dir)
    weights = read_layout(layout, "v1", None, f"oci:{layout_dir}:v1")
    assert weights is not None and set(weights.files) == {"tiny.gguf"}
    blob = weights.files["tiny.gguf"]
    blob.chmod(0o644)
    blob.write_bytes(b"GGUF")
    with pytest.raises(LocalRunError, match=r"tiny.gguf .* is missing or truncated"):
        read_layout(layout, "v1", None, f"oci:{layout_dir}:v1")
    assert read_layout(layout, "v2", None, f"oci:{layout_dir}:v2") is None


def test_flipped_bytes_in_a_layout_blob_are_refused_and_dropped(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "tiny.gguf").write_bytes(b"GGUF" + os.urandom(4096))
    layout_dir = tmp_path / "layout"
    push(model, f"oci:{layout_dir}:v1", format="gguf", quantization="Q8_0", progress=False)
    layout = OciLayout(layout_dir)
    weights = read_layout(layout, "v1", None, f"oci:{layout_dir}:v1")
    assert weights is not None
    blob = weights.files["tiny.gguf"]
    blob.chmod(0o644)
    with open(blob, "r+b") as handle:  # same size, other bytes
        handle.seek(100)
        handle.write(b"\0" * 512)
    with pytest.raises(LocalRunError, match=r"tiny.gguf: the weights are corrupted .* the blob was removed"):
        read_layout(layout, "v1", None, f"oci:{layout_dir}:v1")
    assert not blob.exists()


def test_kaito_run_refuses_corrupted_store_weights_then_repacks(
    stored_weights: Path, kit: Any, tmp_path: Path
) -> None:
    # 1 MiB flipped in the store's blob of the real Gemma 3 270M: `kaito run` used to be ready with
    # /health 200 and serve garbage.
    good = stored_weights.stat().st_size
    stored_weights.chmod(0o644)
    with open(stored_weights, "r+b") as handle:
        handle.seek(good // 2)
        chunk = handle.read(1024 * 1024)
        handle.seek(good // 2)
        handle.write(bytes(b ^ 0xFF for b in chunk))
    result = kit.kaito("run", str(kit.example), "--port", str(kit.free_port()), "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gemma-3-270m-q4_k_m.gguf: the weights are corrupted" in result.stderr
    assert "ready" not in result.stdout
    assert not stored_weights.exists()  # dropped from the store
    # the next run packs the store again from the preset's source: the same, verified blob
    model = model_path_for(prepare(kit.example, default_registry()), tmp_path / "run", progress=False)
    assert stored_weights.is_file() and stored_weights.stat().st_size == good
    assert model.resolve() == stored_weights.resolve()
