"""Admission checks on the nodes a user brings (KAITO's webhook, ``validateResourceSpec`` with node
auto-provisioning off), pure: the operator lists the nodes, this says what is wrong with them.

KAITO lists the nodes matching the labelSelector's matchLabels without its reserved keys and refuses a
preset Workspace when none match, when a node lacks the ``nvidia.com/gpu.*`` labels, or when the nodes
disagree on GPU product, count or memory, with the messages below. One difference: when no matching
node has any GPU (no label, no ``nvidia.com/gpu`` capacity) the nodes are CPU nodes, which this project
plans for (llama.cpp); KAITO refuses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaito_core.planning.hardware import GPU_COUNT_LABEL, GPU_LABELS, GPU_MEMORY_LABEL, GPU_PRODUCT_LABEL
from kaito_core.planning.nodeclaims import RESERVED_LABELS

NO_NODES = "No nodes found matching the specified label selector"


def sanitized_match_labels(match_labels: Mapping[str, str]) -> dict[str, str]:
    """KAITO's SanitizedMatchLabels: the matchLabels without KAITO's reserved keys."""
    return {k: v for k, v in match_labels.items() if k not in RESERVED_LABELS}


def _has_gpu(node: Mapping[str, Any]) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    status = node.get("status") or {}
    capacity = {**(status.get("capacity") or {}), **(status.get("allocatable") or {})}
    return any(label in labels for label in GPU_LABELS) or str(capacity.get("nvidia.com/gpu", "0")) not in (
        "0",
        "",
    )


def brought_node_problems(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """What KAITO's webhook says about the nodes matching a BYO Workspace's selector (empty: fine)."""
    if not nodes:
        return [NO_NODES]
    if not any(_has_gpu(n) for n in nodes):
        return []  # CPU nodes: planned for as they are
    first: tuple[str, str, str, str] | None = None  # node, product, count, memory
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name") or "")
        labels = (node.get("metadata") or {}).get("labels") or {}
        missing = [label for label in GPU_LABELS if not labels.get(label)]
        if missing:
            return [
                f"Failed to get GPU config from nvidia labels on node {name}: missing label(s) "
                f"{', '.join(missing)}; ensure nodes have appropriate NVIDIA GPU labels"
            ]
        facts = (name, labels[GPU_PRODUCT_LABEL], labels[GPU_COUNT_LABEL], labels[GPU_MEMORY_LABEL])
        if first is None:
            first = facts
            continue
        if facts[1] != first[1]:
            return [
                f"Non-uniform GPU product: node {name} has {facts[1]} GPUs, but previous node has {first[1]} "
                "GPUs, all nodes must have the same GPU product for homogeneous placement"
            ]
        if facts[2] != first[2]:
            return [
                f"Non-uniform GPU count: node {name} has {facts[2]} GPUs, "
                f"but previous node has {first[2]} GPUs"
            ]
        if facts[3] != first[3]:
            return [
                f"Non-uniform GPU memory: node {name} has {facts[3]}Mi memory, but previous node has "
                f"{first[3]}Mi memory"
            ]
    return []
