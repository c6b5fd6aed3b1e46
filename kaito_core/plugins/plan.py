"""The Plan: everything decided about a Workspace before any I/O happens.

The planner (``kaito_core.planning``) produces it from a Workspace, the plugin registry and the target
hardware; the operator turns it into Kubernetes objects, ``kaito run`` into local processes, and a
runtime plugin into its container (``Runtime.container(plan)``). It is part of the runtime contract,
so it lives here, below the planner. It is a plain value, printable by ``kaito plan``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kaito_core.plugins.presets import WeightFile

#: Where the weights are in an inference pod (and the init container pulls them to).
POD_WEIGHTS_DIR = "/workspace/weights"
#: Where each adapter is in an inference pod: ADAPTER_DIR/<name>.
ADAPTER_DIR = "/mnt/adapter"
#: Where the inference ConfigMap is mounted.
CONFIG_DIR = "/mnt/config"
#: The port `kaito serve` listens on in a pod (KAITO's).
SERVING_PORT = 5000


@dataclass(frozen=True)
class MemoryEstimate:
    """The fit arithmetic, kept so the Plan can show its working. Bytes."""

    weights: int
    kv_cache: int  # for the planned context length
    overhead: int
    required: int  # weights + kv_cache + overhead
    available: int  # usable memory on the target (GPU memory x utilization, or host RAM)
    per_device: int = 0  # required per GPU after splitting, 0 on CPU
    notes: tuple[str, ...] = ()  # the arithmetic, one step a line, for `kaito plan`


@dataclass(frozen=True)
class AdapterPlan:
    name: str
    image: str | None  # OCI reference of the adapter artifact (or container image); None with a volume
    strength: float = 1.0
    image_pull_secrets: tuple[str, ...] = ()
    # A Kubernetes VolumeSource holding the adapter's files, mounted at ADAPTER_DIR/<name> as KAITO does
    volume: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class PodResources:
    """What each pod of the workload requests (and limits)."""

    gpu: int = 0
    cpu: str | None = None  # Kubernetes quantity, e.g. "4"
    memory: str | None = None  # Kubernetes quantity, e.g. "16Gi"


@dataclass(frozen=True)
class Plan:
    workspace: str
    namespace: str
    preset: str
    runtime: str
    runtime_reason: str  # why this runtime was chosen, in words
    weights_format: str  # "safetensors" | "gguf"
    quantization: str  # "bf16", "Q4_K_M", ...
    files: tuple[WeightFile, ...]
    context_length: int  # max model length the runtime is started with
    node_count: int
    gpus_per_node: int  # 0 on CPU
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    gpu_memory_utilization: float = 0.84
    n_gpu_layers: int = 0  # llama.cpp: -1 all layers on the GPU, 0 CPU only
    threads: int = 0  # CPU threads for CPU runtimes; 0 lets the runtime decide
    instance_type: str | None = None
    target: str = ""  # human-readable description of the hardware planned for
    image: str = ""
    resources: PodResources = field(default_factory=PodResources)
    memory: MemoryEstimate | None = None
    adapters: tuple[AdapterPlan, ...] = ()
    artifact: str | None = None  # OCI reference of the weights artifact, when known
    model_dir: str = POD_WEIGHTS_DIR
    port: int = SERVING_PORT
    chat_template: str | None = None
    served_model_name: str = ""  # defaults to the preset name
    runtime_options: dict[str, Any] = field(default_factory=dict)  # preset defaults + inference ConfigMap
    model_access_secret: str | None = None
    dtype: str = "bfloat16"
    disk_bytes: int = 0  # the preset's disk requirement (the weights volume's size), 0 when unknown
    source_repo: str = ""  # the Hugging Face repository the planned files come from
    source_revision: str = ""  # its pinned revision

    @property
    def gpu_count(self) -> int:
        return self.node_count * self.gpus_per_node

    @property
    def weights_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
