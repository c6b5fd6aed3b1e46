"""Nodes you bring (KAITO's BYO mode, node auto-provisioning disabled): the admission rules that
read the cluster's Nodes, with KAITO's messages.

The webhook lists the Nodes the selector matches; ``kaito validate --nodes FILE`` reads them from a
file (``kubectl get nodes -o yaml``) and :func:`matching_nodes` picks them. Either way the rules here
only read the Node objects (plain dicts), so they stay pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaito_core.plugins import GiB

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB per GPU


class NodeRuleError(ValueError):
    """A node-dependent rule failed; the text is KAITO's."""


@dataclass(frozen=True)
class NodeGPUs:
    """What KAITO reads from one node's NVIDIA labels (sku.GetGPUConfigFromNodeLabels)."""

    product: str
    count: int
    total_memory: int  # bytes on the node: per-GPU MiB rounded to whole GiB, times the count

    @property
    def memory_text(self) -> str:
        return f"{self.total_memory // GiB}Gi"


def matching_nodes(nodes: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The nodes carrying every label in ``labels`` (what the API server's label query returns)."""
    found = []
    for node in nodes:
        node_labels = (node.get("metadata") or {}).get("labels") or {}
        if all(node_labels.get(k) == v for k, v in labels.items()):
            found.append(node)
    return found


def node_gpus(node: Mapping[str, Any]) -> NodeGPUs:
    """The node's GPUs from its labels; raises NodeRuleError with KAITO's message."""
    metadata = node.get("metadata") or {}
    name = str(metadata.get("name") or "")
    labels: Mapping[str, str] = metadata.get("labels") or {}
    prefix = f"Failed to get GPU config from nvidia labels on node {name}"
    if not all(label in labels for label in (GPU_PRODUCT_LABEL, GPU_COUNT_LABEL, GPU_MEMORY_LABEL)):
        raise NodeRuleError(f"{prefix}: missing required nvidia.com labels on node {name}")
    try:
        count = int(labels[GPU_COUNT_LABEL])
    except ValueError:
        raise NodeRuleError(f"{prefix}: invalid {GPU_COUNT_LABEL} value on node {name}: "
                            f"{labels[GPU_COUNT_LABEL]}") from None
    try:
        memory_mib = int(labels[GPU_MEMORY_LABEL])
    except ValueError:
        raise NodeRuleError(f"{prefix}: invalid {GPU_MEMORY_LABEL} value on node {name}: "
                            f"{labels[GPU_MEMORY_LABEL]}") from None
    whole_gib = int(memory_mib / 1024 + 0.5)  # KAITO rounds each GPU to whole GiB
    return NodeGPUs(labels[GPU_PRODUCT_LABEL], count, whole_gib * count * GiB)


def uniform_gpus(nodes: Sequence[Mapping[str, Any]]) -> NodeGPUs:
    """The GPUs every node has; raises NodeRuleError (no nodes, missing labels, non-uniform nodes)."""
    if not nodes:
        raise NodeRuleError("No nodes found matching the specified label selector")
    first: NodeGPUs | None = None
    for node in nodes:
        gpus = node_gpus(node)
        name = (node.get("metadata") or {}).get("name") or ""
        if first is None:
            first = gpus
        elif gpus.product != first.product:
            raise NodeRuleError(
                f"Non-uniform GPU product: node {name} has {gpus.product} GPUs, but previous node has "
                f"{first.product} GPUs, all nodes must have the same GPU product for homogeneous placement")
        elif gpus.count != first.count:
            raise NodeRuleError(f"Non-uniform GPU count: node {name} has {gpus.count} GPUs, but previous "
                                f"node has {first.count} GPUs")
        elif gpus.total_memory != first.total_memory:
            raise NodeRuleError(f"Non-uniform GPU memory: node {name} has {gpus.memory_text} memory, but "
                                f"previous node has {first.memory_text} memory")
    assert first is not None  # nodes is not empty
    return first
