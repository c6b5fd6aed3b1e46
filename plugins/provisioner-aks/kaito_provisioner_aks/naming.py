"""Pure functions: what the AKS agent pool of a Workspace is called and what it carries.

One Workspace gets one agent pool of ``count`` nodes (KAITO's gpu-provisioner makes one pool of one
VM per NodeClaim; a single pool is simpler to create, scale and delete and keeps the nodes in one
VM scale set). Everything here is derived from the request alone, so a restarted operator finds the
pool it created before.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping

from kaito_core.plugins import GiB, NodeRequest

#: AKS's rule for Linux agent pool names: 1-12 characters, lowercase letters and digits, a letter first.
POOL_NAME_RULE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
POOL_PREFIX = "ws"  # as KAITO's NodeClaim names ("ws" + hash)
_HASH_CHARS = 12 - len(POOL_PREFIX)
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"

#: Labels kaito puts on every node it asks for (the names KAITO uses).
WORKSPACE_LABEL = "kaito.sh/workspace"
WORKSPACE_NAMESPACE_LABEL = "kaito.sh/workspacenamespace"
#: The label AKS itself puts on every node of an agent pool.
AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
#: The taint that keeps non-GPU work off the nodes (KAITO's).
GPU_TAINT = "sku=gpu:NoSchedule"

#: Azure tags on the pool. Tag names may not contain '/', so these are not the label names.
TAG_MANAGED = "kaito-managed"
TAG_WORKSPACE = "kaito-workspace"
TAG_NAMESPACE = "kaito-workspace-namespace"

#: AKS's default OS disk; never go below it, as the OS, the GPU driver and the runtime image share it.
DEFAULT_OS_DISK_GB = 128


def pool_name(namespace: str, workspace: str) -> str:
    """``ws`` + 10 base-36 characters of sha256("<namespace>/<workspace>").

    Always a valid Linux pool name, and ~51 bits of hash, so two Workspaces collide only with
    negligible probability (the provisioner also checks the pool's tags before touching it).
    """
    digest = int.from_bytes(hashlib.sha256(f"{namespace}/{workspace}".encode()).digest(), "big")
    chars = []
    for _ in range(_HASH_CHARS):
        digest, rem = divmod(digest, 36)
        chars.append(_BASE36[rem])
    return POOL_PREFIX + "".join(chars)


def node_selector_for(request: NodeRequest) -> dict[str, str]:
    """Labels that select exactly the nodes of the Workspace's pool (AKS sets the agentpool label)."""
    return {AGENTPOOL_LABEL: pool_name(request.namespace, request.workspace)}


def node_labels_for(request: NodeRequest) -> dict[str, str]:
    """The Workspace's matchLabels, plus the labels KAITO puts on its nodes (those win on a clash)."""
    labels = dict(request.labels)
    labels[WORKSPACE_LABEL] = request.workspace
    labels[WORKSPACE_NAMESPACE_LABEL] = request.namespace
    return labels


def tags_for(request: NodeRequest) -> dict[str, str]:
    return {TAG_MANAGED: "true", TAG_WORKSPACE: request.workspace, TAG_NAMESPACE: request.namespace}


def owned_by(tags: Mapping[str, str] | None, workspace: str, namespace: str) -> bool:
    """True when a pool's tags say kaito made it for this Workspace."""
    tags = tags or {}
    return (
        tags.get(TAG_MANAGED) == "true"
        and tags.get(TAG_WORKSPACE) == workspace
        and tags.get(TAG_NAMESPACE) == namespace
    )


def os_disk_gb(disk_bytes: int) -> int:
    """The OS disk for a model needing ``disk_bytes``: whole GiB, never below AKS's default 128 GB."""
    return max(DEFAULT_OS_DISK_GB, math.ceil(disk_bytes / GiB)) if disk_bytes > 0 else DEFAULT_OS_DISK_GB
