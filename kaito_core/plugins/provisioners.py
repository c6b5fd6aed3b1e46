"""The provisioner contract: instance types a cloud offers, and nodes created for a Workspace."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class InstanceType:
    """A machine size a provisioner can create."""

    name: str  # "Standard_NC6s_v3"
    gpu_model: str  # "NVIDIA V100"
    gpu_count: int
    gpu_memory: int  # bytes per GPU
    compute_capability: str = ""  # "7.0"
    cpu_cores: int = 0
    memory: int = 0  # bytes of host RAM

    @property
    def total_gpu_memory(self) -> int:
        return self.gpu_count * self.gpu_memory


@dataclass(frozen=True)
class NodeRequest:
    """What the operator asks a provisioner for, for one Workspace."""

    workspace: str
    namespace: str
    instance_type: str
    count: int
    labels: Mapping[str, str]  # the Workspace's labelSelector.matchLabels, put on every node
    disk_bytes: int = 0


@dataclass(frozen=True)
class ProvisionResult:
    """Where provisioning stands. ``error`` reaches the Workspace status verbatim."""

    ready_nodes: tuple[str, ...] = ()
    pending: int = 0
    error: str | None = None
    reason: str = ""  # short CamelCase reason for the status condition, e.g. "QuotaExceeded"
    #: Node labels that select exactly the nodes made for this request (e.g. AKS's
    #: ``kubernetes.azure.com/agentpool``); the operator waits for Nodes matching them when the
    #: provisioner cannot name the nodes itself. Empty when ``ready_nodes`` is authoritative.
    node_selector: Mapping[str, str] = field(default_factory=dict, hash=False)


@runtime_checkable
class Provisioner(Protocol):
    name: str

    def catalog(self) -> Mapping[str, InstanceType]:
        """Instance types this provisioner can create, by name."""
        ...

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        """Create what is missing (idempotent) and report where the nodes stand."""
        ...

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        """Delete every node this provisioner created for the Workspace (idempotent)."""
        ...
