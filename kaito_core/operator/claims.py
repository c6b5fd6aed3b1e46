"""Nodes through Karpenter NodeClaims (``--provisioner gpu-provisioner`` or ``karpenter``).

The operator writes one NodeClaim per missing node and waits; a node-provisioner controller (Azure's
gpu-provisioner, ``kaito gpu-provisioner``, or Karpenter) turns each claim into a node. What KAITO's
AzureGPUProvisioner does, in its order: claims needed = target - ready nodes that came without a
claim (no ``karpenter.sh/nodepool`` label); create the difference with the claims that exist; wait
until enough claims are Ready (else the earliest lifecycle condition's reason and message, as the
controller wrote them); then enough Ready nodes of the instance type; then the GPU device plugin
(``nvidia.com/gpu`` capacity) on every claimed node when the Plan needs GPUs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kaito_core.api import Workspace
from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.kube import Kube
from kaito_core.operator.status import Check, node_is_ready
from kaito_core.planning.nodeclaims import (
    AWAITING_RECONCILIATION,
    INSTANCE_TYPE_LABEL,
    NODEPOOL_LABEL,
    claim_ready,
    claim_selector,
    creation_stamp,
    deleting,
    first_provisioning_state,
    launch_unavailable,
    nodeclaim_manifest,
    nodeclaim_name,
)

log = logging.getLogger("kaito.operator")
Io = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ClaimRequest:
    instance_type: str
    target: int
    disk_bytes: int
    need_gpu: bool


def _stamp(index: int) -> str:
    """The creation time in KAITO's layout; ``index`` keeps claims made in one pass apart."""
    return creation_stamp(time.time_ns() + index)


class ClaimStep:
    def __init__(self, kube: Kube, config: OperatorConfig, io: Io) -> None:
        self.kube = kube
        self.config = config
        self.io = io

    async def ensure(self, ws: Workspace, request: ClaimRequest) -> tuple[Check, list[str]]:
        """Create the missing claims; the ResourceReady check and the ready node names."""
        selector = claim_selector(ws)
        nodes = [n for n in await self.io(self.kube.list_nodes, selector) if not _node_deleting(n)]
        ready_nodes = [n for n in nodes if node_is_ready(n, need_gpu=False)]
        brought = sum(1 for n in ready_nodes if NODEPOOL_LABEL not in _labels(n))
        needed = max(0, request.target - brought)
        claims = await self.io(self.kube.list_nodeclaims, selector)
        for index in range(max(0, needed - len(claims))):
            claims.append(await self._create(ws, request, index))

        ready_claims = sum(1 for c in claims if claim_ready(c))
        if ready_claims < needed:
            state = first_provisioning_state(claims)
            if state is None:
                return Check(
                    "False", "NodeClaimNotReady", f"{ready_claims}/{needed} NodeClaims are ready"
                ), []
            reason, message = state
            live = [c for c in claims if not deleting(c)]
            failed = reason != AWAITING_RECONCILIATION and any(launch_unavailable(c) for c in live)
            return Check("False", reason, message, failed=failed), []

        typed = [n for n in ready_nodes if _labels(n).get(INSTANCE_TYPE_LABEL) == request.instance_type]
        if len(typed) < request.target:
            return Check(
                "False",
                "NodeNotReady",
                f"Not enough Nodes are ready: {len(typed)}/{request.target} {request.instance_type} "
                f"node(s) Ready",
            ), []
        if request.need_gpu:
            names = {str((c.get("status") or {}).get("nodeName") or "") for c in claims if claim_ready(c)}
            claimed = [n for n in typed if n["metadata"]["name"] in names]
            if len(claimed) < len(names) or not all(node_is_ready(n, need_gpu=True) for n in claimed):
                return Check(
                    "False",
                    "NodePluginsNotReady",
                    "waiting all node plugins to be ready (nvidia.com/gpu capacity on every node)",
                ), []
        usable = sorted(n["metadata"]["name"] for n in typed if node_is_ready(n, request.need_gpu))
        return Check("True", "NodesReady", f"{len(usable)} node(s) of {request.instance_type} ready"), usable

    async def _create(self, ws: Workspace, request: ClaimRequest, index: int) -> dict[str, Any]:
        manifest = nodeclaim_manifest(
            ws,
            name=nodeclaim_name(ws.namespace, ws.name, _stamp(index)),
            instance_type=request.instance_type,
            disk_bytes=request.disk_bytes,
            node_class=self.config.claim_node_class(),
            cloud=self.config.cloud,
            image_family=self.config.node_image_family,
        )
        created: dict[str, Any] = await self.io(self.kube.create_nodeclaim, manifest)
        log.info(
            "created NodeClaim %s for Workspace %s/%s", manifest["metadata"]["name"], ws.namespace, ws.name
        )
        return created

    async def release(self, name: str, namespace: str) -> int:
        """Delete the Workspace's claims (their controller removes the nodes); how many were deleted."""
        selector = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={namespace}"
        deleted = 0
        for claim in await self.io(self.kube.list_nodeclaims, selector):
            if not deleting(claim):
                await self.io(self.kube.delete_nodeclaim, claim["metadata"]["name"])
                deleted += 1
        return deleted


def _labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def _node_deleting(node: Mapping[str, Any]) -> bool:
    return bool((node.get("metadata") or {}).get("deletionTimestamp"))
