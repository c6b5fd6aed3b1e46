"""A fake of Karpenter's NodeClaim lifecycle controller, against the API emulator (tests only).

It plays what ``sigs.k8s.io/karpenter`` (v1, ``pkg/controllers/nodeclaim/lifecycle``) does with a
NodeClaim, and what the cloud does under it, in the documented order:

1. on create: the ``karpenter.sh/termination`` finalizer; Launched, Registered, Initialized and Ready
   Unknown with reason ``AwaitingReconciliation``;
2. launch (``launch.go``): the cloud provider creates an instance for the first instance type of the
   requirements; on success ``status.providerID``, capacity and allocatable, the instance-type label,
   Launched=True. A create error leaves Launched Unknown with reason ``LaunchFailed`` and the error as
   the message (retried on the next pass); an insufficient-capacity error deletes the claim;
3. the instance boots and its kubelet registers a Node carrying the providerID, the claim's labels
   and taints (NotReady until the test's kubelet says otherwise);
4. registration (``registration.go``): the Node with the claim's providerID: its labels and taints
   synced from the claim, ``karpenter.sh/registered=true``, ``status.nodeName``, Registered=True;
5. initialization (``initialization.go``): the Node Ready and every extended resource of the
   instance's capacity (``nvidia.com/gpu``) in its allocatable: ``karpenter.sh/initialized=true``,
   Initialized=True, and Ready=True (the root condition: all three True);
6. deletion (``termination``): the Node and the instance go, then the finalizer.

``step()`` runs one pass over every claim (tests call it, or ``start()`` runs it in a thread).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaito_testing.apiserver import ApiServer

API_VERSION, KIND = "karpenter.sh/v1", "NodeClaim"
FINALIZER = "karpenter.sh/termination"
AWAITING = "AwaitingReconciliation"
LIFECYCLE = ("Launched", "Registered", "Initialized", "Ready")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CRDS = Path(__file__).parent / "crds"


def load_nodeclaim_crds(server: ApiServer, node_classes: bool = True) -> None:
    """Karpenter's NodeClaim CRD (as its repository ships it), and the KaitoNodeClass CRD."""
    names = ["karpenter.sh_nodeclaims.yaml"] + (["kaito.sh_kaitonodeclasses.yaml"] if node_classes else [])
    for name in names:
        for doc in yaml.safe_load_all((CRDS / name).read_text()):
            if doc:
                server.apply(doc)


@dataclass(frozen=True)
class Offering:
    """What an instance of one type reports: capacity (``nvidia.com/gpu`` is an extended resource)."""

    cpu: str = "24"
    memory: str = "220Gi"
    gpus: int = 1


@dataclass
class FakeKarpenter:
    server: ApiServer
    offerings: Mapping[str, Offering] = field(default_factory=dict)  # instance type -> capacity
    provider_prefix: str = "fake://"
    #: instance type, or the claim's kaito.sh/workspace label -> message: the cloud provider's Create
    #: fails with it (Launched stays Unknown, reason LaunchFailed)
    launch_errors: dict[str, str] = field(default_factory=dict)
    #: instance types (or claims' kaito.sh/workspace labels) with no capacity: Karpenter deletes the
    #: claim (an insufficient-capacity error, launch.go)
    insufficient_capacity: set[str] = field(default_factory=set)
    instances: dict[str, str] = field(default_factory=dict)  # providerID -> claim name
    events: list[tuple[str, str]] = field(default_factory=list)  # (claim, what happened)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the loop

    def start(self, interval: float = 0.05) -> FakeKarpenter:
        def loop() -> None:
            while not self._stop.wait(interval):
                self.step()

        self._thread = threading.Thread(target=loop, name="fake-karpenter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def step(self) -> None:
        with self._lock:
            for claim in self.server.list(API_VERSION, KIND):
                self._reconcile(claim)

    # ------------------------------------------------------------------ one claim

    def _reconcile(self, claim: dict[str, Any]) -> None:
        name = claim["metadata"]["name"]
        if claim["metadata"].get("deletionTimestamp"):
            self._terminate(claim)
            return
        if FINALIZER not in (claim["metadata"].get("finalizers") or []):
            self._patch(
                name, {"metadata": {"finalizers": [*claim["metadata"].get("finalizers", []), FINALIZER]}}
            )
            self._conditions(
                name, {t: ("Unknown", AWAITING, "object is awaiting reconciliation") for t in LIFECYCLE}
            )
            return
        status = claim.get("status") or {}
        if not status.get("providerID"):
            self._launch(claim)
            return
        node = self._node_for(status["providerID"])
        if node is None:
            self._join(claim)
            return
        if not status.get("nodeName"):
            self._register(claim, node)
            return
        if _condition(claim, "Initialized") != "True" and self._initialized(claim, node):
            labels = {**node["metadata"].get("labels", {}), "karpenter.sh/initialized": "true"}
            self.server.apply({**node, "metadata": {**node["metadata"], "labels": labels}})
            self._conditions(
                name, {"Initialized": ("True", "Initialized", ""), "Ready": ("True", "Ready", "")}
            )
            self.events.append((name, "initialized"))

    def _launch(self, claim: dict[str, Any]) -> None:
        name = claim["metadata"]["name"]
        instance_type = _instance_type(claim)
        workspace = claim["metadata"].get("labels", {}).get("kaito.sh/workspace", "")
        if {instance_type, workspace} & self.insufficient_capacity:
            self.events.append((name, "insufficient capacity: deleted"))
            self.server.delete(API_VERSION, KIND, name)
            return
        failure = self.launch_errors.get(instance_type) or self.launch_errors.get(workspace)
        if failure or instance_type not in self.offerings:
            message = failure or (f"creating instance, instance type {instance_type!r} is not offered")
            self._conditions(name, {"Launched": ("Unknown", "LaunchFailed", message[:1024])})
            self.events.append((name, "launch failed"))
            return
        offering = self.offerings[instance_type]
        provider_id = f"{self.provider_prefix}{name}"
        self.instances[provider_id] = name
        capacity = {"cpu": offering.cpu, "memory": offering.memory}
        if offering.gpus:
            capacity["nvidia.com/gpu"] = str(offering.gpus)
        labels = {**claim["metadata"].get("labels", {}), INSTANCE_TYPE_LABEL: instance_type}
        self._patch(name, {"metadata": {"labels": labels}})
        self.server.patch_status(
            API_VERSION, KIND, name, "",
            {"providerID": provider_id, "imageID": "fake-image",
             "capacity": capacity, "allocatable": capacity},
        )  # fmt: skip
        self._conditions(name, {"Launched": ("True", "Launched", "")})
        self.events.append((name, "launched"))

    def _join(self, claim: dict[str, Any]) -> None:
        """The instance boots: its kubelet registers a Node (NotReady, no GPUs advertised yet)."""
        status = claim["status"]
        node_name = claim["metadata"]["name"]
        labels = {
            **claim["metadata"].get("labels", {}),
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
        }
        self.server.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node_name, "labels": labels},
                "spec": {"providerID": status["providerID"], "taints": claim["spec"].get("taints", [])},
            }
        )
        self.events.append((claim["metadata"]["name"], "node joined"))

    def _register(self, claim: dict[str, Any], node: dict[str, Any]) -> None:
        name = claim["metadata"]["name"]
        labels = {**node["metadata"].get("labels", {}), **claim["metadata"].get("labels", {})}
        labels["karpenter.sh/registered"] = "true"
        taints = list(node.get("spec", {}).get("taints") or [])
        taints += [t for t in claim["spec"].get("taints", []) if t not in taints]
        finalizers = [*node["metadata"].get("finalizers", []), FINALIZER]
        self.server.apply(
            {
                **node,
                "metadata": {**node["metadata"], "labels": labels, "finalizers": finalizers},
                "spec": {**node.get("spec", {}), "taints": taints},
            }
        )
        self.server.patch_status(API_VERSION, KIND, name, "", {"nodeName": node["metadata"]["name"]})
        self._conditions(name, {"Registered": ("True", "Registered", "")})
        self.events.append((name, "registered"))

    def _initialized(self, claim: dict[str, Any], node: dict[str, Any]) -> bool:
        status = node.get("status") or {}
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        ):
            return False
        allocatable = status.get("allocatable") or {}
        extended = [k for k in (claim.get("status") or {}).get("capacity", {}) if "/" in k]
        return all(str(allocatable.get(k, "0")) not in ("0", "") for k in extended)

    def _terminate(self, claim: dict[str, Any]) -> None:
        name = claim["metadata"]["name"]
        provider_id = (claim.get("status") or {}).get("providerID")
        if provider_id:
            node = self._node_for(provider_id)
            if node is not None:
                finalizers = [f for f in node["metadata"].get("finalizers", []) if f != FINALIZER]
                self.server.apply({**node, "metadata": {**node["metadata"], "finalizers": finalizers}})
                self.server.delete("v1", "Node", node["metadata"]["name"])
            self.instances.pop(provider_id, None)
        finalizers = [f for f in claim["metadata"].get("finalizers", []) if f != FINALIZER]
        self._patch(name, {"metadata": {"finalizers": finalizers}})
        self.events.append((name, "terminated"))

    # ------------------------------------------------------------------ helpers

    def _node_for(self, provider_id: str) -> dict[str, Any] | None:
        return next(
            (n for n in self.server.list("v1", "Node") if n.get("spec", {}).get("providerID") == provider_id),
            None,
        )

    def _patch(self, name: str, patch: dict[str, Any]) -> None:
        current = self.server.get(API_VERSION, KIND, name)
        if current is None:
            return
        merged = {**current, "metadata": {**current["metadata"], **patch.get("metadata", {})}}
        self.server.apply(merged)

    def _conditions(self, name: str, changes: Mapping[str, tuple[str, str, str]]) -> None:
        current = self.server.get(API_VERSION, KIND, name)
        if current is None:
            return
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        generation = current["metadata"].get("generation", 1)
        conditions = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []}
        for type_, (status, reason, message) in changes.items():
            old = conditions.get(type_)
            moved = old is None or old.get("status") != status
            conditions[type_] = {
                "type": type_, "status": status, "reason": reason, "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": stamp if moved or old is None else old["lastTransitionTime"],
            }  # fmt: skip
        self.server.patch_status(API_VERSION, KIND, name, "", {"conditions": list(conditions.values())})


def _instance_type(claim: Mapping[str, Any]) -> str:
    for req in claim.get("spec", {}).get("requirements") or []:
        if req.get("key") == INSTANCE_TYPE_LABEL and req.get("values"):
            return str(req["values"][0])
    return ""


def _condition(claim: Mapping[str, Any], type_: str) -> str | None:
    found = [c for c in (claim.get("status") or {}).get("conditions") or [] if c.get("type") == type_]
    return str(found[0].get("status")) if found else None
