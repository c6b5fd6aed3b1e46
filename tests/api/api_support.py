"""Test plugins for the Workspace API tests (presets, a provisioner, a runtime), importable by the
test modules as well as by conftest's fixtures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kaito_core.plugins import (
    Architecture,
    GiB,
    InstanceType,
    ModelSource,
    NodeRequest,
    Preset,
    ProvisionResult,
    Requirements,
    TuningSupport,
    WeightFile,
    WeightFormat,
    hookimpl,
)


def make_preset(name: str, total_gpu_memory: int = 9 * GiB, per_gpu_memory: int = 0, **extra: Any) -> Preset:
    fields: dict[str, Any] = {
        "name": name,
        "family": "test",
        "source": ModelSource(repo=f"example/{name}", revision="0" * 40),
        "formats": (WeightFormat("safetensors", "bf16", (WeightFile("model.safetensors", 7 * GiB),)),),
        "architecture": Architecture(
            parameters=3_800_000_000,
            layers=32,
            attention_heads=32,
            kv_heads=32,
            head_dim=96,
            context_length=4096,
        ),
        "requirements": Requirements(
            gpu_count=1, total_gpu_memory=total_gpu_memory, per_gpu_memory=per_gpu_memory, disk=80 * GiB
        ),
        "runtimes": ("vllm",),
        "default_runtime": "vllm",
        "license": "MIT",
        "tuning": TuningSupport(),
    }
    fields.update(extra)
    return Preset(**fields)


class FakeProvisioner:
    """A provisioner with a fixed catalog (a real one would create nodes; these tests only read it)."""

    name = "fake"

    def __init__(self, catalog: Mapping[str, InstanceType]) -> None:
        self._catalog = dict(catalog)

    def catalog(self) -> Mapping[str, InstanceType]:
        return self._catalog

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        return ProvisionResult(pending=request.count)

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        return None


class FakeRuntime:
    """Enough of a runtime for the annotation check (validation only reads its name)."""

    name = "vllm"
    formats = ("safetensors",)
    needs_gpu = True
    image = "example/vllm:1"

    def overhead_bytes(self, plan_context_length: int) -> int:
        return 0

    def container(self, plan: Any) -> dict[str, Any]:
        return {"name": "vllm", "image": self.image}

    def engine(self, config: Any) -> Any:
        raise NotImplementedError("not served in these tests")


class RuntimePlugin:
    @hookimpl
    def kaito_register_runtimes(self, register: Callable[[Any], None]) -> None:
        register(FakeRuntime())


CATALOG = {
    "Standard_NC6s_v3": InstanceType("Standard_NC6s_v3", "NVIDIA V100", 1, 16 * GiB),
    "Standard_NC12s_v3": InstanceType("Standard_NC12s_v3", "NVIDIA V100", 2, 16 * GiB),
    "Standard_NC24ads_A100_v4": InstanceType("Standard_NC24ads_A100_v4", "NVIDIA A100", 1, 80 * GiB),
}


class PresetPlugin:
    def __init__(self, *presets: Preset) -> None:
        self.presets = presets

    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        for preset in self.presets:
            register(preset)


class ProvisionerPlugin:
    def __init__(self, provisioner: FakeProvisioner) -> None:
        self.provisioner = provisioner

    @hookimpl
    def kaito_register_provisioners(self, register: Callable[[Any], None]) -> None:
        register(self.provisioner)
