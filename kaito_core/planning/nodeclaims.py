"""Karpenter ``NodeClaim``s (``karpenter.sh/v1``) for a Workspace, as KAITO writes them; and how to read
the ones that exist. Pure: the operator does the I/O (``kaito_core.operator.claims``).

KAITO's rules (``pkg/utils/nodeclaim``): the name is ``ws`` + 9 hex characters of
sha256(namespace + name + a timestamp), so a claim deleted while its node drains never blocks the
name of its replacement, and it is a valid AKS agent pool name (Azure's gpu-provisioner makes one
pool per claim, named after it); labels ``karpenter.sh/nodepool: kaito`` (a pool no Karpenter
NodePool owns, so Karpenter neither scales it up nor consolidates it), ``kaito.sh/workspace``,
``kaito.sh/workspacenamespace`` and the labelSelector's matchLabels without the reserved keys;
annotation ``karpenter.sh/do-not-disrupt: "true"``; taint ``sku=gpu:NoSchedule``; requirements on
the nodepool, the instance type and linux (plus ``karpenter.azure.com/sku-name`` on Azure and a GPU
count above 0 on AWS); storage = the preset's disk requirement, 1024Gi when none is known.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaito_core.api.names import RESERVED_SELECTOR_LABELS
from kaito_core.planning.labels import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL
from kaito_core.plugins import GiB

if TYPE_CHECKING:
    from kaito_core.api import Workspace

GROUP, VERSION, PLURAL, KIND = "karpenter.sh", "v1", "nodeclaims", "NodeClaim"
API_VERSION = f"{GROUP}/{VERSION}"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
KAITO_NODEPOOL = "kaito"
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
NODE_IMAGE_FAMILY_ANNOTATION = "kaito.sh/node-image-family"
DEFAULT_NODE_IMAGE_FAMILY = "ubuntu"
NODE_IMAGE_FAMILIES = ("ubuntu", "azurelinux")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
OS_LABEL = "kubernetes.io/os"
AZURE_SKU_LABEL = "karpenter.azure.com/sku-name"
AWS_GPU_COUNT_LABEL = "karpenter.k8s.aws/instance-gpu-count"
DEFAULT_STORAGE = "1024Gi"
#: Karpenter's message when no offering could launch (KAITO stops retrying on it).
INSTANCE_TYPES_UNAVAILABLE = "all requested instance types were unavailable during launch"
#: The lifecycle conditions in the order Karpenter sets them; an earlier one is the root cause.
LIFECYCLE = ("Launched", "Registered", "Initialized")
#: Karpenter core's reason for a condition not yet looked at: a state, not an error.
AWAITING_RECONCILIATION = "AwaitingReconciliation"
#: Keys a labelSelector may not put on a claim (they would let one Workspace target another's nodes).
RESERVED_LABELS = RESERVED_SELECTOR_LABELS


@dataclass(frozen=True)
class NodeClass:
    """The ``nodeClassRef`` of the claims, and the API version its CRD is served at (checked at start)."""

    group: str
    kind: str
    name: str = "default"
    version: str = ""

    @property
    def plural(self) -> str:
        return self.kind.lower() + ("es" if self.kind.endswith("s") else "s")


#: KAITO's node classes by cloud (its ``CLOUD_PROVIDER``).
CLOUD_NODE_CLASSES = {
    "azure": NodeClass("kaito.sh", "KaitoNodeClass", "default", "v1alpha1"),
    "aws": NodeClass("karpenter.k8s.aws", "EC2NodeClass", "default", "v1"),
}


def creation_stamp(ns: int) -> str:
    """A time in nanoseconds since the epoch in KAITO's layout, ``2006-01-02 15:04:05.000000000`` (UTC)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}"


def nodeclaim_name(namespace: str, name: str, stamp: str) -> str:
    """``ws`` + 9 hex of sha256(namespace + name + stamp); ``stamp`` is the creation time (KAITO's
    ``2006-01-02 15:04:05.000000000``), given by the caller so this stays pure."""
    return "ws" + hashlib.sha256(f"{namespace}{name}{stamp}".encode()).hexdigest()[:9]


def storage_request(disk_bytes: int) -> str:
    """The preset's disk requirement in whole GiB; KAITO's 1024Gi when the preset names none."""
    return f"{math.ceil(disk_bytes / GiB)}Gi" if disk_bytes > 0 else DEFAULT_STORAGE


def claim_labels(ws: Workspace) -> dict[str, str]:
    labels = {k: v for k, v in ws.resource.label_selector.match_labels.items() if k not in RESERVED_LABELS}
    labels.update(
        {NODEPOOL_LABEL: KAITO_NODEPOOL, WORKSPACE_LABEL: ws.name, WORKSPACE_NAMESPACE_LABEL: ws.namespace}
    )
    return labels


def claim_selector(ws: Workspace) -> str:
    """The label selector of the claims (and the nodes) of one Workspace."""
    return f"{WORKSPACE_LABEL}={ws.name},{WORKSPACE_NAMESPACE_LABEL}={ws.namespace}"


def nodeclaim_manifest(
    ws: Workspace,
    *,
    name: str,
    instance_type: str,
    disk_bytes: int,
    node_class: NodeClass,
    cloud: str,
    image_family: str = "",
) -> dict[str, Any]:
    """One NodeClaim for ``ws`` (cluster-scoped: Karpenter's CRD has no namespace)."""
    family = (ws.metadata.annotations or {}).get(NODE_IMAGE_FAMILY_ANNOTATION, "").lower()
    if family not in NODE_IMAGE_FAMILIES:
        family = image_family.lower() if image_family.lower() in NODE_IMAGE_FAMILIES else ""
    requirements: list[dict[str, Any]] = [
        {"key": NODEPOOL_LABEL, "operator": "In", "values": [KAITO_NODEPOOL]},
        {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [instance_type]},
        {"key": OS_LABEL, "operator": "In", "values": ["linux"]},
    ]
    if cloud == "azure":
        requirements.append({"key": AZURE_SKU_LABEL, "operator": "In", "values": [instance_type]})
    elif cloud == "aws":
        requirements.append({"key": AWS_GPU_COUNT_LABEL, "operator": "Gt", "values": ["0"]})
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "labels": claim_labels(ws),
            "annotations": {
                DO_NOT_DISRUPT_ANNOTATION: "true",
                NODE_IMAGE_FAMILY_ANNOTATION: family or DEFAULT_NODE_IMAGE_FAMILY,
            },
        },
        "spec": {
            "nodeClassRef": {"group": node_class.group, "kind": node_class.kind, "name": node_class.name},
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "requirements": requirements,
            "resources": {"requests": {"storage": storage_request(disk_bytes)}},
        },
    }


# ------------------------------------------------------------------------------ reading claims


def condition(claim: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    conditions = (claim.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), None)


def deleting(claim: Mapping[str, Any]) -> bool:
    return bool((claim.get("metadata") or {}).get("deletionTimestamp"))


def claim_ready(claim: Mapping[str, Any]) -> bool:
    """KAITO's IsNodeClaimReadyNotDeleting: Ready=True when there is a Ready condition, else a node name."""
    if deleting(claim):
        return False
    ready = condition(claim, "Ready")
    if ready is not None:
        return ready.get("status") == "True"
    return bool((claim.get("status") or {}).get("nodeName"))


def claim_instance_type(claim: Mapping[str, Any]) -> str | None:
    for req in (claim.get("spec") or {}).get("requirements") or []:
        if req.get("key") == INSTANCE_TYPE_LABEL and req.get("operator") == "In" and req.get("values"):
            return str(req["values"][0])
    return None


def launch_unavailable(claim: Mapping[str, Any]) -> bool:
    """Launched=False because no instance type could launch: no retry helps (KAITO stops there)."""
    launched = condition(claim, "Launched")
    return (
        launched is not None
        and launched.get("status") == "False"
        and INSTANCE_TYPES_UNAVAILABLE in str(launched.get("message") or "")
    )


def first_provisioning_state(claims: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """KAITO's FirstNodeClaimProvisioningState: (reason, message) of the earliest non-True lifecycle
    condition with a message across the live claims; a real error wins over AwaitingReconciliation.
    The message is copied whole (KAITO cuts it at 256 characters, which can drop the part of an Azure
    quota error that says which limit to raise)."""
    live = [c for c in claims if not deleting(c)]
    pending: tuple[str, str] | None = None
    for stage in LIFECYCLE:
        for claim in live:
            cond = condition(claim, stage)
            if cond is None or cond.get("status") == "True" or not cond.get("message"):
                continue
            found = (str(cond.get("reason") or stage + "NotTrue"), str(cond["message"]))
            if cond.get("reason") == AWAITING_RECONCILIATION:
                pending = pending or found
                continue
            return found
    return pending
