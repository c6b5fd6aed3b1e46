"""The target a Workspace is planned for: an instance type, nodes a user brings, or one machine.

Pure: the values come from a catalog, from Node objects someone else listed, or from numbers that
``kaito_core.local.machine`` detected. Memory is in bytes; ``gpu_memory`` is per GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaito_core.planning.gpus import compute_capability as capability_of
from kaito_core.planning.quantity import gib, parse_quantity
from kaito_core.plugins import InstanceType, MiB, PlanError

#: The labels NVIDIA GPU feature discovery puts on a node, which KAITO reads for nodes users bring.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB per GPU
GPU_LABELS = (GPU_PRODUCT_LABEL, GPU_COUNT_LABEL, GPU_MEMORY_LABEL)
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Hardware:
    """What one node of the target offers, how many such nodes there are, and whether more can come."""

    kind: str  # "instance-type" | "nodes" | "cpu" | "local"
    description: str
    gpu_model: str = ""
    gpus_per_node: int = 0
    gpu_memory: int = 0  # bytes per GPU
    compute_capability: str = ""
    cpu_cores: float = 0  # per node (allocatable on a node, logical CPUs on a machine)
    memory: int = 0  # host RAM per node, bytes
    nodes: int = 1  # nodes available (or requested, for an instance type)
    can_add_nodes: bool = False  # a provisioner creates as many nodes as the plan needs
    instance_type: str | None = None
    node_names: tuple[str, ...] = ()

    @property
    def has_gpu(self) -> bool:
        return self.gpus_per_node > 0 and self.gpu_memory > 0

    @property
    def total_gpu_memory(self) -> int:
        """GPU memory of all nodes available or requested (KAITO's total-memory check)."""
        return self.nodes * self.gpus_per_node * self.gpu_memory

    # ------------------------------------------------------------------------------ constructors

    @classmethod
    def from_instance_type(cls, instance_type: InstanceType, count: int = 1) -> Hardware:
        """``count`` nodes of a provisioner's instance type (``resource.count``); more may be added."""
        if count < 1:
            raise PlanError(f"resource.count must be at least 1, got {count}")
        gpus = (
            f"{instance_type.gpu_count}x {instance_type.gpu_model} {gib(instance_type.gpu_memory)}"
            if instance_type.gpu_count
            else "no GPU"
        )
        return cls(
            kind="instance-type",
            description=f"{count}x {instance_type.name} ({gpus})",
            gpu_model=instance_type.gpu_model,
            gpus_per_node=instance_type.gpu_count,
            gpu_memory=instance_type.gpu_memory,
            compute_capability=instance_type.compute_capability or capability_of(instance_type.gpu_model),
            cpu_cores=instance_type.cpu_cores,
            memory=instance_type.memory,
            nodes=count,
            can_add_nodes=True,
            instance_type=instance_type.name,
        )

    @classmethod
    def cpu_only(cls, cores: float, memory_bytes: int, description: str = "") -> Hardware:
        """A machine or node without GPUs."""
        if cores <= 0 or memory_bytes <= 0:
            raise PlanError(
                f"a CPU target needs cores and memory, got {cores} cores and {memory_bytes} bytes"
            )
        return cls(
            kind="cpu",
            description=description or f"CPU only ({_cores(cores)} cores, {gib(memory_bytes)} RAM)",
            cpu_cores=cores,
            memory=memory_bytes,
        )

    @classmethod
    def local(
        cls,
        cpu_cores: float,
        memory_bytes: int,
        gpu_model: str = "",
        gpu_count: int = 0,
        gpu_memory: int = 0,
        compute_capability: str = "",
    ) -> Hardware:
        """This machine (``kaito run``): its logical CPUs, RAM and NVIDIA GPUs (memory per GPU)."""
        gpus = f", {gpu_count}x {gpu_model} {gib(gpu_memory)}" if gpu_count else ", no GPU"
        return cls(
            kind="local",
            description=f"this machine ({_cores(cpu_cores)} CPUs, {gib(memory_bytes)} RAM{gpus})",
            gpu_model=gpu_model,
            gpus_per_node=gpu_count,
            gpu_memory=gpu_memory,
            compute_capability=compute_capability or (capability_of(gpu_model) if gpu_count else ""),
            cpu_cores=cpu_cores,
            memory=memory_bytes,
        )

    @classmethod
    def from_nodes(cls, nodes: Sequence[Mapping[str, Any]]) -> Hardware:
        """Nodes a user brings (Kubernetes Node objects as dicts), described by their GPU labels.

        Nodes that report ``Ready`` other than ``True`` are left out. Every remaining node must have
        the same GPUs; a node without any GPU label or ``nvidia.com/gpu`` capacity is a CPU node,
        described by its allocatable cpu and memory.
        """
        if not nodes:
            raise PlanError("No nodes found matching the specified label selector")
        described = [_describe_node(node) for node in nodes]
        ready = [d for d in described if d.ready]
        if not ready:
            names = ", ".join(d.name for d in described)
            raise PlanError(f"none of the nodes matching the label selector is Ready ({names})")
        first = ready[0]
        different = [d for d in ready[1:] if d.gpus != first.gpus]
        if different:
            listing = "; ".join(f"{d.name}: {d.gpu_text}" for d in [first, *different])
            raise PlanError(
                "the nodes matching the label selector do not have uniform GPUs "
                f"({listing}); every node of a Workspace must have the same GPU model, count and memory"
            )
        product, count, memory_mib = first.gpus
        node_names = tuple(d.name for d in ready)
        cpu = min(d.cpu for d in ready)
        ram = min(d.memory for d in ready)
        noun = "node" if len(ready) == 1 else "nodes"
        return cls(
            kind="nodes",
            description=f"{len(ready)} {noun} ({first.gpu_text}; {_cores(cpu)} CPUs, {gib(ram)} allocatable)",
            gpu_model=product,
            gpus_per_node=count,
            gpu_memory=memory_mib * MiB,
            compute_capability=capability_of(product) if count else "",
            cpu_cores=cpu,
            memory=ram,
            nodes=len(ready),
            node_names=node_names,
        )


@dataclass(frozen=True)
class _NodeFacts:
    name: str
    ready: bool
    gpus: tuple[str, int, int]  # product, count, MiB per GPU ("", 0, 0) for a CPU node
    cpu: float
    memory: int

    @property
    def gpu_text(self) -> str:
        product, count, memory = self.gpus
        return f"{count}x {product} ({memory} MiB)" if count else "no GPU"


def _describe_node(node: Mapping[str, Any]) -> _NodeFacts:
    if not isinstance(node, Mapping):
        raise PlanError(f"a node must be a Kubernetes Node object (a mapping), got {type(node).__name__}")
    metadata = node.get("metadata") or {}
    name = str(metadata.get("name") or "<unnamed>")
    labels: Mapping[str, str] = metadata.get("labels") or {}
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or {}
    capacity = status.get("capacity") or {}
    conditions = status.get("conditions") or []
    ready = all(c.get("status") == "True" for c in conditions if c.get("type") == "Ready")

    cpu = parse_quantity(allocatable.get("cpu", capacity.get("cpu", 0)), f"node {name} allocatable cpu")
    memory_quantity = allocatable.get("memory", capacity.get("memory", 0))
    memory = int(parse_quantity(memory_quantity, f"node {name} allocatable memory"))
    present = [label for label in GPU_LABELS if label in labels]
    has_gpu_resource = any(
        parse_quantity(source.get(GPU_RESOURCE, 0), f"node {name} {GPU_RESOURCE}") > 0
        for source in (allocatable, capacity)
    )
    if not present and not has_gpu_resource:
        return _NodeFacts(name, ready, ("", 0, 0), cpu, memory)
    missing = [label for label in GPU_LABELS if label not in labels]
    if missing:
        raise PlanError(
            f"node {name} has GPUs but is missing the label(s) {', '.join(missing)}; KAITO reads the GPU "
            f"model, count and memory per GPU (MiB) of a node you bring from {', '.join(GPU_LABELS)}. "
            "Install NVIDIA GPU feature discovery (part of the GPU operator) or add the labels"
        )
    count = _int_label(labels, GPU_COUNT_LABEL, name)
    memory_mib = _int_label(labels, GPU_MEMORY_LABEL, name)
    return _NodeFacts(name, ready, (labels[GPU_PRODUCT_LABEL], count, memory_mib), cpu, memory)


def _int_label(labels: Mapping[str, str], label: str, node: str) -> int:
    value = labels[label]
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number <= 0:
        raise PlanError(f"node {node}: label {label}={value!r} must be a positive whole number")
    return number


def _cores(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{cores:.2f}"
