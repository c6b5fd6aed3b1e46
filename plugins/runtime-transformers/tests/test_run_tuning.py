"""`kaito run tuning.yaml` on this machine: base weights from an OCI layout, data from a host path,
`kaito tune` as a child process, the adapter pushed to the registry (or an OCI layout)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kaito_runtime_transformers import plugin
from kaito_runtime_transformers.train import ADAPTER_FILES

from kaito_core.api import Workspace
from kaito_core.artifacts import pull, push
from kaito_core.local.errors import LocalRunError
from kaito_core.local.prepare import validate
from kaito_core.local.tuning import TuningRun, run_tuning
from kaito_core.plugins import (
    Architecture,
    ModelSource,
    Preset,
    Registry,
    Requirements,
    TuningSupport,
    WeightFile,
    WeightFormat,
    hookimpl,
)

from .conftest import FAST_CONFIG

pytestmark = pytest.mark.timeout(600)
TINY = Preset(
    name="tiny-llama",
    family="tiny",
    source=ModelSource("local/tiny-llama", "0" * 40),
    formats=(WeightFormat("safetensors", "bf16", (WeightFile("model.safetensors", 1 << 20, None),)),),
    architecture=Architecture(
        parameters=100_000, layers=2, attention_heads=4, kv_heads=2, head_dim=16, context_length=256
    ),
    requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=1 << 30),
    runtimes=("transformers",),
    default_runtime="transformers",
    license="Apache-2.0",
    tuning=TuningSupport(methods=("lora", "qlora")),
)


class Presets:
    @hookimpl
    def kaito_register_presets(self, register: Any) -> None:
        register(TINY)


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.register(Presets(), distribution="tiny-presets", version="0")
    registry.register(plugin, distribution="kaito-runtime-transformers", version="0.1.0")
    return registry


def workspace(model_ref: str, data: Path, output: dict[str, Any], method: str = "lora") -> Workspace:
    return Workspace.model_validate(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": "tune-tiny", "annotations": {"kaito.sh/model-artifact": model_ref}},
            "resource": {"labelSelector": {"matchLabels": {"app": "tiny"}}},
            "tuning": {
                "preset": {"name": "tiny-llama"},
                "method": method,
                "config": "tiny-config",
                "input": {"volumeSource": {"hostPath": {"path": str(data)}}},
                "output": output,
            },
        }
    )


def test_kaito_run_tunes_and_pushes(
    registry: Registry, tiny_model: Path, chat_parquet: Path, tmp_path: Path
) -> None:
    model_ref = f"oci:{tmp_path / 'models'}:tiny"
    push(tiny_model, model_ref, progress=False)
    config = tmp_path / "training_config.yaml"
    config.write_text(FAST_CONFIG)
    target = os.environ.get("KAITO_TEST_REGISTRY")
    image = f"{target}/adapters/tiny-run:1" if target else f"oci:{tmp_path / 'adapters'}:tiny-run"
    ws = workspace(model_ref, chat_parquet.parent, {"image": image, "imagePushSecret": "push"})
    validate(ws, registry, Path("tuning.yaml"))
    with pytest.raises(LocalRunError, match=r"give its training_config\.yaml with --training-config"):
        run_tuning(TuningRun(ws, tmp_path / "run0"), registry)
    calls: list[list[str]] = []

    def spawn(argv: list[str]) -> int:
        calls.append(argv)
        return subprocess.call(argv)

    where = run_tuning(TuningRun(ws, tmp_path / "run", config, progress=False), registry, spawn=spawn)
    assert where.startswith(image + "@sha256:")
    assert calls[0][3:5] == ["tune", "--model"] and "--no-progress" in calls[0]
    back = tmp_path / "pulled"
    pull(image, back, progress=False)
    assert {p.name for p in back.iterdir()} >= set(ADAPTER_FILES)


def test_kaito_run_refuses_qlora_on_a_cpu_with_the_trainers_message(
    registry: Registry,
    tiny_model: Path,
    chat_parquet: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    model_ref = f"oci:{tmp_path / 'models'}:tiny"
    push(tiny_model, model_ref, progress=False)
    ws = workspace(
        model_ref,
        chat_parquet.parent,
        {"volumeSource": {"hostPath": {"path": str(tmp_path / "out")}}},
        method="qlora",
    )
    (tmp_path / "c.yaml").write_text("training_config: {}\n")
    with pytest.raises(LocalRunError, match="kaito tune failed"):
        run_tuning(TuningRun(ws, tmp_path / "run", tmp_path / "c.yaml", progress=False), registry)
    assert "needs an NVIDIA GPU" in capfd.readouterr().err
