"""A safetensors runtime that runs on CPUs (transformers) is planned into host memory on a CPU target."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_core.api import Workspace
from kaito_core.planning import Hardware, PlanError, plan_workspace
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

SMALL = Preset(
    name="small-st",
    family="t",
    source=ModelSource("x/small", "1" * 40),
    formats=(WeightFormat("safetensors", "bf16", (WeightFile("model.safetensors", 2 * GiB, None),)),),
    architecture=Architecture(
        parameters=1_000_000_000, layers=16, attention_heads=16, kv_heads=4, head_dim=64, context_length=4096
    ),
    requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=10 * GiB),
    runtimes=("cpu-st",),
    default_runtime="cpu-st",
    license="MIT",
)


class CpuSafetensors:
    name = "cpu-st"
    formats = ("safetensors",)
    needs_gpu = False
    image = "example.com/cpu-st:1"

    def overhead_bytes(self, plan_context_length: int) -> int:
        return GiB

    def container(self, plan: Any) -> dict[str, Any]:
        return {"name": "x", "image": self.image}

    def engine(self, config: Any) -> Any:
        raise NotImplementedError("a test double")


class Plugin:
    @hookimpl
    def kaito_register_presets(self, register: Any) -> None:
        register(SMALL)

    @hookimpl
    def kaito_register_runtimes(self, register: Any) -> None:
        register(CpuSafetensors())


def workspace() -> Workspace:
    return Workspace.model_validate(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": "w"},
            "resource": {"labelSelector": {"matchLabels": {"a": "b"}}},
            "inference": {"preset": {"name": "small-st"}},
        }
    )


def test_planned_in_float32_into_host_memory() -> None:
    registry = Registry()
    registry.register(Plugin(), distribution="t", version="0")
    plan = plan_workspace(workspace(), registry, Hardware.cpu_only(4, 16 * GiB))
    assert (plan.runtime, plan.gpus_per_node, plan.node_count) == ("cpu-st", 0, 1)
    assert plan.memory is not None and plan.memory.weights == 4 * GiB  # bf16 weights as float32
    assert plan.memory.required <= 16 * GiB and plan.context_length == 4096
    with pytest.raises(PlanError, match="cpu-st on the CPU needs"):
        plan_workspace(workspace(), registry, Hardware.cpu_only(4, 3 * GiB))
