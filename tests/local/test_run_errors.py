"""`kaito run` refuses clearly, before any model starts: invalid file, no fit, port in use, no weights."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kaito_core.local.errors import LocalRunError
from kaito_core.local.runner import RunOptions, run
from kaito_core.plugins import (
    Architecture,
    GiB,
    ModelSource,
    Preset,
    Registry,
    Requirements,
    WeightFile,
    WeightFormat,
    hookimpl,
)


def _preset(name: str, parameters: int, gguf_bytes: int) -> Preset:
    """A made-up llama.cpp preset with no weights anywhere on this machine."""
    return Preset(
        name=name,
        family="fake",
        source=ModelSource(repo=f"example/{name}", revision="0" * 40),
        formats=(WeightFormat("gguf", "Q4_K_M", (WeightFile(f"{name}.gguf", gguf_bytes, "ab" * 32),)),),
        architecture=Architecture(parameters=parameters, layers=32, attention_heads=32, kv_heads=8,
                                  head_dim=128, context_length=8192, dtype="bfloat16"),
        requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=gguf_bytes),
        runtimes=("llamacpp",),
        default_runtime="llamacpp",
        license="apache-2.0",
    )


class _FakePresets:
    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        register(_preset("fake-huge-400b", 400_000_000_000, 240 * GiB))
        register(_preset("fake-tiny-weightless", 100_000_000, 1 * GiB // 16))


@pytest.fixture(scope="module")
def registry() -> Registry:
    """Every installed plugin, plus the two fake presets."""
    registry = Registry()
    registry.load_entry_points()
    registry.register(_FakePresets(), distribution="fake-presets")
    return registry


def _workspace(tmp_path: Path, preset: str, annotations: dict[str, str] | None = None) -> Path:
    import yaml

    manifest = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": f"ws-{preset}", **({"annotations": annotations} if annotations else {})},
        "resource": {"labelSelector": {"matchLabels": {"apps": preset}}},
        "inference": {"preset": {"name": preset}},
    }
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_a_model_that_does_not_fit_says_so_with_numbers(
    tmp_path: Path, registry: Registry, kaito_home: Path
) -> None:
    options = RunOptions(file=_workspace(tmp_path, "fake-huge-400b"), port=1)  # the port is never reached
    with pytest.raises(LocalRunError) as caught:
        run(options, registry=registry)
    message = str(caught.value)
    assert "fake-huge-400b does not fit this machine" in message
    assert "GiB" in message or "Gi" in message  # the planner's numbers
    assert "RAM" in message
    assert "presets that fit this machine:" in message and "gemma-3-270m" in message
    assert not list(kaito_home.glob("runs/*/run.json"))  # refused before a run was recorded


def test_missing_weights_say_where_they_were_looked_for(
    tmp_path: Path, registry: Registry, kit: Any, kaito_home: Path
) -> None:
    options = RunOptions(file=_workspace(tmp_path, "fake-tiny-weightless"), port=kit.free_port(),
                         progress=False)
    with pytest.raises(LocalRunError) as caught:
        run(options, registry=registry)
    message = str(caught.value)
    assert "weights not found for fake-tiny-weightless" in message
    assert f"oci:{kaito_home / 'store'}:fake-tiny-weightless-gguf-q4_k_m" in message
    assert "kaito.sh/model-artifact" in message


def test_missing_artifact_named_by_the_annotation(tmp_path: Path, kit: Any) -> None:
    nowhere = tmp_path / "no-store"
    path = _workspace(tmp_path, "gemma-3-270m", {"kaito.sh/model-artifact": f"oci:{nowhere}:v1"})
    result = kit.kaito("run", str(path), "--port", str(kit.free_port()))
    assert result.returncode == 1
    assert f"oci:{nowhere}:v1" in result.stderr and "does not exist" in result.stderr
    assert "starting" not in result.stdout


def test_port_in_use_fails_before_the_model_starts(kit: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = kit.kaito("run", str(kit.example), "--port", str(port))
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "starting" not in result.stdout  # no model process was started
    assert elapsed < 30


def test_invalid_workspace_gives_the_errors_of_kaito_validate(tmp_path: Path, kit: Any) -> None:
    path = _workspace(tmp_path, "no-such-model")
    validated = kit.kaito("validate", str(path))
    result = kit.kaito("run", str(path))
    assert validated.returncode == 1 and result.returncode == 1
    problems = [line for line in validated.stderr.splitlines() if not line.startswith("warning: plugin")]
    assert problems
    for line in problems:
        assert line in result.stderr


def test_a_server_that_fails_to_load_is_reported_with_its_log(tmp_path: Path, kit: Any) -> None:
    from kaito_core.artifacts import push

    model = tmp_path / "model"
    model.mkdir()
    (model / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"GGUF" + bytes(4096))  # not a loadable model
    layout = tmp_path / "layout"
    push(model, f"oci:{layout}:broken", format="gguf", quantization="Q4_K_M", progress=False)
    path = _workspace(tmp_path, "gemma-3-270m", {"kaito.sh/model-artifact": f"oci:{layout}:broken"})
    result = kit.kaito("run", str(path), "--port", str(kit.free_port()), "--detach", "--name", "broken",
                       timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exited with code" in result.stderr and "before it was ready" in result.stderr
    assert "the end of its log" in result.stderr
    assert kit.kaito("ps", "-o", "json").stdout.strip() in ("[]", "")  # nothing left behind


def test_a_volume_adapter_other_than_hostpath_is_refused(tmp_path: Path, registry: Registry) -> None:
    """`kaito run` reads a volume adapter from a hostPath; a claim (a pod's volume) names what to do."""
    import yaml

    from kaito_core.local.prepare import prepare

    path = _workspace(tmp_path, "gemma-3-270m")
    manifest = yaml.safe_load(path.read_text())
    source = {"name": "lora", "volumeSource": {"persistentVolumeClaim": {"claimName": "loras"}}}
    manifest["inference"]["adapters"] = [{"source": source}]
    path.write_text(yaml.safe_dump(manifest))
    refused = r"adapters\[0\].source.volumeSource: .* hostPath .*persistentVolumeClaim"
    with pytest.raises(LocalRunError, match=refused):
        prepare(path, registry)
