"""A provisioner for a cloud with no NodeClaim controller, through the in-process contract.

The "cloud" here is a pool of machines already registered as Nodes and labelled
``pool.example.kaito.sh/free=true`` with their ``node.kubernetes.io/instance-type`` (bare metal, a
lab): ``ensure_nodes`` hands a Workspace as many free machines of its instance type as it asks for,
by labelling them for it (``kaito.sh/workspace``, ``kaito.sh/workspacenamespace``, the
labelSelector's labels) and tainting them ``sku=gpu:NoSchedule``; ``delete_nodes`` gives them back.
A real cloud plugin would create and delete VMs in the same two calls. It talks to the API server
with the operator's credentials (in-cluster, else $KUBECONFIG), so the operator's ServiceAccount
needs ``nodes: patch`` for it.

Only names from ``kaito_core.plugins`` are imported: the SDK face.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kaito_core.plugins import GiB, InstanceType, NodeRequest, Provisioner, ProvisionResult, hookimpl

FREE_LABEL = "pool.example.kaito.sh/free"
WORKSPACE_LABEL = "kaito.sh/workspace"
NAMESPACE_LABEL = "kaito.sh/workspacenamespace"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}

CATALOG = {
    "example-a100-1": InstanceType("example-a100-1", "NVIDIA A100", 1, 80 * GiB, "8.0", 24, 220 * GiB),
    "example-t4-1": InstanceType("example-t4-1", "NVIDIA T4", 1, 16 * GiB, "7.5", 8, 56 * GiB),
}


class PoolProvisioner:
    name = "example"

    def __init__(self) -> None:
        self._core: Any = None
        self._lock = threading.Lock()  # two Workspaces must not take the same free machine

    def catalog(self) -> Mapping[str, InstanceType]:
        return CATALOG

    def _api(self) -> Any:
        if self._core is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
            self._core = client.CoreV1Api()
        return self._core

    def _nodes(self, selector: str) -> list[dict[str, Any]]:
        response = self._api().list_node(label_selector=selector, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data).get("items", [])
        return items

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        mine = f"{WORKSPACE_LABEL}={request.workspace},{NAMESPACE_LABEL}={request.namespace}"
        with self._lock:
            held = self._nodes(mine)
            free = self._nodes(f"{FREE_LABEL}=true,{INSTANCE_TYPE_LABEL}={request.instance_type}")
            for node in free[: max(0, request.count - len(held))]:
                labels = {**request.labels, WORKSPACE_LABEL: request.workspace,
                          NAMESPACE_LABEL: request.namespace, FREE_LABEL: "false"}  # fmt: skip
                taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("key") != "sku"]
                self._api().patch_node(
                    node["metadata"]["name"],
                    {"metadata": {"labels": labels}, "spec": {"taints": [*taints, GPU_TAINT]}},
                )
            held = self._nodes(mine)
        missing = request.count - len(held)
        if missing > 0:
            return ProvisionResult(
                pending=missing,
                error=f"the machine pool has no free {request.instance_type} node for {missing} more "
                f"(label one {FREE_LABEL}=true)",
                reason="PoolExhausted",
            )
        return ProvisionResult(
            node_selector={WORKSPACE_LABEL: request.workspace, NAMESPACE_LABEL: request.namespace}
        )

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        with self._lock:
            for node in self._nodes(f"{WORKSPACE_LABEL}={workspace},{NAMESPACE_LABEL}={namespace}"):
                taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("key") != "sku"]
                self._api().patch_node(
                    node["metadata"]["name"],
                    {"metadata": {"labels": {WORKSPACE_LABEL: None, NAMESPACE_LABEL: None,
                                             FREE_LABEL: "true"}},
                     "spec": {"taints": taints}},
                )  # fmt: skip


@hookimpl
def kaito_register_provisioners(register: Callable[[Provisioner], None]) -> None:
    register(PoolProvisioner())  # makes no call until the operator asks for nodes
