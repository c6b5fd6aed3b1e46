"""Pure functions: the AKS agent pool a Karpenter NodeClaim asks for, as Azure's gpu-provisioner
builds it (``pkg/providers/instance/instance.go``), and how a NodeClaim's conditions are written.

One NodeClaim -> one agent pool of one VM, named after the claim (KAITO names claims ``ws`` + 9 hex,
a valid Linux pool name); vmSize = the first value of the ``node.kubernetes.io/instance-type``
requirement; node labels = ``karpenter.sh/nodepool: kaito`` + the claim's labels +
``kaito.sh/machine-type`` (gpu for ``Standard_N*``) + ``kaito.sh/creation-timestamp``; taints
``key=value:Effect`` from the claim; the OS disk = the storage request in whole GiB (a claim without
one is refused, as gpu-provisioner refuses it); osSKU from ``kaito.sh/node-image-family``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaito_core.plugins import GiB

AGENTPOOL_NAME_RULE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
MACHINE_TYPE_LABEL = "kaito.sh/machine-type"
CREATION_LABEL = "kaito.sh/creation-timestamp"
IMAGE_FAMILY_ANNOTATION = "kaito.sh/node-image-family"
#: Labels that mark a claim (and its pool) as KAITO's: gpu-provisioner only touches these.
KAITO_LABELS = ("kaito.sh/workspace", "kaito.sh/ragengine")
#: The label selector of the claims this controller reconciles.
CLAIM_SELECTOR = "kaito.sh/workspace"
FINALIZER = "karpenter.sh/termination"
AWAITING = "AwaitingReconciliation"
CONDITION_TYPES = ("Launched", "Registered", "Initialized", "Ready")
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "": 1}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|)$")


class ClaimError(ValueError):
    """The claim cannot become a pool; the message goes to its Launched condition as it is."""


@dataclass(frozen=True)
class PoolSpec:
    name: str
    vm_size: str
    node_labels: dict[str, str]
    node_taints: list[str]
    os_disk_gb: int
    os_sku: str


def quantity_bytes(text: str) -> int:
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ClaimError(f"storage request {text!r} is not a Kubernetes quantity")
    return int(float(match.group(1)) * _SUFFIXES[match.group(2)])


def instance_type(claim: Mapping[str, Any]) -> str | None:
    for req in (claim.get("spec") or {}).get("requirements") or []:
        if req.get("key") == INSTANCE_TYPE_LABEL and req.get("values"):
            return str(req["values"][0])
    return None


def pool_spec(claim: Mapping[str, Any]) -> PoolSpec:
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    name = str(meta.get("name") or "")
    if not AGENTPOOL_NAME_RULE.match(name):
        raise ClaimError(
            f"agentpool name({name}) is invalid, must match regex pattern: {AGENTPOOL_NAME_RULE.pattern}"
        )
    vm_size = instance_type(claim)
    if not vm_size:
        raise ClaimError("nodeClaim spec has no requirement for instance type")
    labels = {NODEPOOL_LABEL: "kaito", **(meta.get("labels") or {})}
    labels[MACHINE_TYPE_LABEL] = "gpu" if "Standard_N" in vm_size else "cpu"
    created = str(meta.get("creationTimestamp") or "")
    stamp = dt.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else dt.datetime.now(dt.UTC)
    labels[CREATION_LABEL] = stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    taints = [f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in spec.get("taints") or []]
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    size = quantity_bytes(storage) if storage else 0
    if size <= 0:
        raise ClaimError(f"storage request of nodeclaim({name}) should be more than 0")
    family = str((meta.get("annotations") or {}).get(IMAGE_FAMILY_ANNOTATION, "")).lower()
    os_sku = "AzureLinux" if family == "azurelinux" else "Ubuntu"
    return PoolSpec(name, vm_size, labels, taints, size // GiB, os_sku)


def owned_by_kaito(node_labels: Mapping[str, str] | None) -> bool:
    """gpu-provisioner's agentPoolIsOwnedByKaito and agentPoolIsCreatedFromNodeClaim together."""
    labels = node_labels or {}
    return any(k in labels for k in KAITO_LABELS) and NODEPOOL_LABEL in labels


def conditions_with(
    claim: Mapping[str, Any], changes: Mapping[str, tuple[str, str, str]], now: str
) -> list[dict[str, Any]]:
    """The claim's conditions with ``changes`` (type -> status, reason, message) applied, Karpenter's
    way: lastTransitionTime moves only when the status does; Ready is True when the three are."""
    generation = (claim.get("metadata") or {}).get("generation", 1)
    current = {c["type"]: dict(c) for c in (claim.get("status") or {}).get("conditions") or []}
    for type_, (status, reason, message) in changes.items():
        old = current.get(type_)
        current[type_] = {
            "type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now,
        }  # fmt: skip
    stages = [current.get(t, {}).get("status") for t in CONDITION_TYPES[:3]]
    if all(s == "True" for s in stages):
        ready = ("True", "Ready", "")
    else:
        ready = ("Unknown", AWAITING, "object is awaiting reconciliation")
    old = current.get("Ready")
    if old is None or old.get("status") != ready[0] or old.get("reason") != ready[1]:
        current["Ready"] = {
            "type": "Ready", "status": ready[0], "reason": ready[1], "message": ready[2],
            "observedGeneration": generation,
            "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == ready[0] else now,
        }  # fmt: skip
    return [current[t] for t in CONDITION_TYPES if t in current]


def condition_status(claim: Mapping[str, Any], type_: str) -> str | None:
    for cond in (claim.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status"))
    return None
