"""Fixtures for the planner tests: a plugin Registry filled directly (no entry points), Workspaces.

- ``plan_registry``: the Phi-3 and Gemma 3 presets, two small runtimes satisfying the Runtime protocol
  (vllm: safetensors on a GPU, 2.3 GiB overhead; llamacpp: GGUF, 512 MiB overhead) and a provisioner
  whose catalog is the AKS one.
- ``make_registry(runtimes=..., presets=...)``: the same with a chosen subset.
- ``workspace(preset, ...)``: a v1beta1 Workspace built through the real API models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from kaito_presets_gemma3 import PRESETS as GEMMA_PRESETS
from kaito_presets_phi3 import PRESETS as PHI3_PRESETS
from kaito_provisioner_aks.catalog import AKS_CATALOG

from kaito_core.api import Workspace
from kaito_core.plugins import GiB, InstanceType, NodeRequest, Preset, ProvisionResult, Registry, hookimpl

MiB = 1024**2


class TestRuntime:
    """A Runtime for planning tests: the planner reads name, formats, needs_gpu, image, overhead_bytes."""

    __test__ = False

    def __init__(self, name: str, formats: tuple[str, ...], needs_gpu: bool, overhead: int) -> None:
        self.name = name
        self.formats = formats
        self.needs_gpu = needs_gpu
        self.image = f"registry.test/kaito-{name}:1"
        self._overhead = overhead

    def overhead_bytes(self, plan_context_length: int) -> int:
        return self._overhead

    def container(self, plan: Any) -> dict[str, Any]:
        return {"name": self.name, "image": plan.image or self.image}

    def engine(self, config: Any) -> Any:
        raise AssertionError("the planner never starts an engine")


class CatalogProvisioner:
    """A provisioner that only has a catalog (the planner never provisions)."""

    name = "aks-catalog"

    def __init__(self, catalog: Mapping[str, InstanceType]) -> None:
        self._catalog = dict(catalog)

    def catalog(self) -> Mapping[str, InstanceType]:
        return self._catalog

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        return ProvisionResult(error="the planning tests create no nodes", reason="TestOnly")

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        return None


VLLM = TestRuntime("vllm", ("safetensors",), True, int(2.3 * GiB))
LLAMACPP = TestRuntime("llamacpp", ("gguf",), False, 512 * MiB)


class _Plugin:
    def __init__(
        self, presets: Iterable[Preset], runtimes: Iterable[Any], provisioners: Iterable[Any]
    ) -> None:
        self.presets, self.runtimes, self.provisioners = list(presets), list(runtimes), list(provisioners)

    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        for preset in self.presets:
            register(preset)

    @hookimpl
    def kaito_register_runtimes(self, register: Callable[[Any], None]) -> None:
        for runtime in self.runtimes:
            register(runtime)

    @hookimpl
    def kaito_register_provisioners(self, register: Callable[[Any], None]) -> None:
        for provisioner in self.provisioners:
            register(provisioner)


def build_registry(
    presets: Iterable[Preset] = (*PHI3_PRESETS, *GEMMA_PRESETS),
    runtimes: Iterable[Any] = (VLLM, LLAMACPP),
    catalog: Mapping[str, InstanceType] = AKS_CATALOG,
) -> Registry:
    registry = Registry()
    registry.register(
        _Plugin(presets, runtimes, [CatalogProvisioner(catalog)]), distribution="planning-tests"
    )
    assert not registry.errors(), registry.errors()
    return registry


@pytest.fixture
def plan_registry() -> Registry:
    return build_registry()


@pytest.fixture
def make_registry() -> Callable[..., Registry]:
    return build_registry


def build_workspace(
    preset: str,
    instance_type: str | None = "Standard_NC6s_v3",
    count: int = 1,
    annotations: Mapping[str, str] | None = None,
    adapters: list[dict[str, Any]] | None = None,
) -> Workspace:
    manifest: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {
            "name": f"ws-{preset.replace('.', '-')}",
            "namespace": "team",
            "annotations": dict(annotations or {}),
        },
        "resource": {"count": count, "labelSelector": {"matchLabels": {"apps": "test"}}},
        "inference": {"preset": {"name": preset}},
    }
    if instance_type:
        manifest["resource"]["instanceType"] = instance_type
    if adapters:
        manifest["inference"]["adapters"] = adapters
    return Workspace.model_validate(manifest)


@pytest.fixture
def workspace() -> Callable[..., Workspace]:
    return build_workspace


def gpu_node(
    name: str,
    product: str | None = "NVIDIA-A100-SXM4-80GB",
    count: str | None = "1",
    memory_mib: str | None = "81920",
    ready: bool = True,
    cpu: str = "15900m",
    memory: str = "130000000Ki",
) -> dict[str, Any]:
    """A Node as `kubectl get nodes -o yaml` lists it; a label left None is absent."""
    labels = {"kubernetes.io/hostname": name, "apps": "test"}
    for key, value in (
        ("nvidia.com/gpu.product", product),
        ("nvidia.com/gpu.count", count),
        ("nvidia.com/gpu.memory", memory_mib),
    ):
        if value is not None:
            labels[key] = value
    gpus = count if count is not None and count.isdigit() else "1"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": {"cpu": "16", "memory": "131000000Ki", "nvidia.com/gpu": gpus},
            "allocatable": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpus},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def cpu_node(name: str, cpu: str = "3920m", memory: str = "15000Mi") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "apps": "test"}},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi"},
            "allocatable": {"cpu": cpu, "memory": memory},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


@pytest.fixture
def nodes() -> Any:
    class Nodes:
        gpu = staticmethod(gpu_node)
        cpu = staticmethod(cpu_node)

    return Nodes


@pytest.fixture
def test_runtimes() -> dict[str, TestRuntime]:
    return {"vllm": VLLM, "llamacpp": LLAMACPP}
