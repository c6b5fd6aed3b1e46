"""The gpu-provisioner's reconciler: one KAITO NodeClaim -> one AKS agent pool of one VM.

Blocking calls (the kopf handlers in ``gpu_provisioner`` run them in threads). Level-triggered: each
call reads the claim, the pool in ARM and the Node, moves the claim one lifecycle step (Launched:
the pool exists with a providerID on its node; Registered: the node carries the claim's labels and
taints and ``status.nodeName`` is set; Initialized: the node is Ready with its GPUs advertised) and
says when to look again. Azure's own message for a failed create (quota, a VM size not offered, a
missing role assignment) goes to the Launched condition as it came, with its code as the reason.
No call waits on Azure's long-running operations: a create or delete is started and the next pass
reads the pool's ``provisioningState``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kaito_core.plugins import InstanceType
from kaito_provisioner_aks.claimpool import (
    AWAITING,
    CONDITION_TYPES,
    ClaimError,
    condition_status,
    conditions_with,
    owned_by_kaito,
    pool_spec,
)
from kaito_provisioner_aks.config import resolve_config
from kaito_provisioner_aks.errors import camel_reason, describe

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.containerservice import ContainerServiceClient
    from kubernetes.client import ApiClient

log = logging.getLogger("kaito.gpu_provisioner")
GROUP, VERSION, PLURAL = "karpenter.sh", "v1", "nodeclaims"
#: seconds between looks while something moves; after a failure; once a claim is Ready
SOON, RETRY, SETTLED = 2.0, 60.0, 300.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClaimReconciler:
    def __init__(
        self,
        api: ApiClient,
        *,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        cluster_name: str | None = None,
        credential: TokenCredential | None = None,
        base_url: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        catalog: Mapping[str, InstanceType] | None = None,
        environ: Mapping[str, str] | None = None,
        soon: float = SOON,
        retry: float = RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self.config = resolve_config(subscription_id, resource_group, cluster_name, environ=environ)
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self._credential = credential
        self._base_url = base_url
        self._options = {"retry_total": 3, **(client_options or {})}
        self._options.pop("logging_enable", None)  # azure-core's trace would log the bearer token
        if catalog is None:
            from kaito_provisioner_aks.catalog import AKS_CATALOG

            catalog = AKS_CATALOG
        self.catalog = catalog
        self.soon, self.retry, self.clock = soon, retry, clock
        self._held: dict[str, float] = {}  # claim -> when a failed create may be tried again
        self._lock = threading.Lock()
        self._client: ContainerServiceClient | None = None

    # ------------------------------------------------------------------ Azure

    def _azure(self) -> ContainerServiceClient:
        with self._lock:
            if self._client is None:
                from azure.mgmt.containerservice import ContainerServiceClient

                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential  # workload identity in the pod

                    credential = DefaultAzureCredential()
                self._client = ContainerServiceClient(
                    credential, self.config.subscription_id, base_url=self._base_url, **self._options
                )
            return self._client

    def _pool(self, name: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._azure().agent_pools.get(self.config.resource_group, self.config.cluster_name, name)
        except ResourceNotFoundError:
            return None

    # ------------------------------------------------------------------ the lifecycle

    def reconcile(self, claim: Mapping[str, Any]) -> float:
        """Move ``claim`` on by one step; seconds until it should be looked at again."""
        name = claim["metadata"]["name"]
        if not (claim.get("status") or {}).get("conditions"):
            waiting = ("Unknown", AWAITING, "object is awaiting reconciliation")
            self._status(claim, {}, {t: waiting for t in CONDITION_TYPES[:3]})
            return 0.0
        if condition_status(claim, "Launched") != "True":
            return self._launch(claim)
        node = self._node(claim)
        if condition_status(claim, "Registered") != "True":
            if node is None:
                return self.soon
            self._register(claim, node)
            return 0.0
        if condition_status(claim, "Initialized") != "True":
            if node is None or not self._initialized(claim, node):
                return self.soon
            self._label_node(node, {"karpenter.sh/initialized": "true"})
            self._status(claim, {}, {"Initialized": ("True", "Initialized", "")})
            log.info("NodeClaim %s initialized on node %s", name, node["metadata"]["name"])
            return self.soon
        return SETTLED

    def _launch(self, claim: Mapping[str, Any]) -> float:
        from azure.core.exceptions import AzureError
        from azure.mgmt.containerservice.models import AgentPool
        from azure.mgmt.containerservice.models import (
            AgentPoolManagedClusterAgentPoolProfileProperties as PoolProperties,
        )

        name = claim["metadata"]["name"]
        try:
            spec = pool_spec(claim)
        except ClaimError as err:
            self._launch_failed(claim, "LaunchFailed", str(err))
            return self.retry
        try:
            pool = self._pool(name)
            if pool is None or (pool.provisioning_state == "Failed" and self._may_retry(name)):
                if pool is not None and not owned_by_kaito(pool.node_labels):
                    self._launch_failed(
                        claim, "NodePoolConflict", f"agent pool {name} exists and is not kaito's"
                    )
                    return self.retry
                body = AgentPool(
                    properties=PoolProperties(
                        count=1, vm_size=spec.vm_size, mode="User", os_type="Linux", os_sku=spec.os_sku,
                        type_properties_type="VirtualMachineScaleSets", node_labels=spec.node_labels,
                        node_taints=spec.node_taints, os_disk_size_gb=spec.os_disk_gb,
                    )
                )  # fmt: skip
                self._azure().agent_pools.begin_create_or_update(
                    self.config.resource_group, self.config.cluster_name, name, body
                )  # started, not awaited: the next pass reads the pool's state
                log.info("creating agent pool %s (%s) for NodeClaim %s", name, spec.vm_size, name)
                return self.soon
        except AzureError as err:
            message, reason = describe(err)
            if "in progress" in message:  # a create this controller started before a restart
                return self.soon
            self._hold(name)
            self._launch_failed(claim, reason, message)
            return self.retry
        state = pool.provisioning_state or "Unknown"
        if state == "Failed":
            detail = pool.status.provisioning_error if pool.status is not None else None
            message = (detail.message if detail is not None else None) or f"agent pool {name} failed"
            reason = camel_reason(detail.code) if detail is not None and detail.code else "LaunchFailed"
            self._hold(name)
            self._launch_failed(claim, reason, message)
            return self.retry
        if state != "Succeeded":
            return self.soon
        nodes = self._pool_nodes(name)
        if len(nodes) != 1 or not (nodes[0].get("spec") or {}).get("providerID"):
            return self.soon  # the VM has not joined the cluster yet
        node = nodes[0]
        status = node.get("status") or {}
        self._status(
            claim,
            {"providerID": node["spec"]["providerID"], "imageID": pool.node_image_version or "",
             "capacity": status.get("capacity") or {}, "allocatable": status.get("allocatable") or {}},
            {"Launched": ("True", "Launched", "")},
        )  # fmt: skip
        log.info("NodeClaim %s launched as %s", name, node["spec"]["providerID"])
        return 0.0

    def _register(self, claim: Mapping[str, Any], node: Mapping[str, Any]) -> None:
        """Karpenter's registration: the claim's labels and taints on the node, then nodeName."""
        labels = {**(claim["metadata"].get("labels") or {}), "karpenter.sh/registered": "true"}
        taints = list((node.get("spec") or {}).get("taints") or [])
        taints += [t for t in (claim.get("spec") or {}).get("taints") or [] if t not in taints]
        self.core.patch_node(
            node["metadata"]["name"], {"metadata": {"labels": labels}, "spec": {"taints": taints}},
            _preload_content=False,
        )  # fmt: skip
        self._status(
            claim, {"nodeName": node["metadata"]["name"]}, {"Registered": ("True", "Registered", "")}
        )
        log.info("NodeClaim %s registered node %s", claim["metadata"]["name"], node["metadata"]["name"])

    def _initialized(self, claim: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
        status = node.get("status") or {}
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        ):
            return False
        sku = self.catalog.get(pool_spec(claim).vm_size)
        if sku is not None and sku.gpu_count > 0:  # the device plugin has advertised the GPUs
            return str((status.get("allocatable") or {}).get("nvidia.com/gpu", "0")) not in ("0", "")
        return True

    def terminate(self, claim: Mapping[str, Any]) -> bool:
        """Delete the node and the pool; True once the pool is gone (the finalizer may then go)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        name = claim["metadata"]["name"]
        node = self._node(claim)
        if node is not None:
            self._delete_node(node["metadata"]["name"])
        try:
            pool = self._pool(name)
            if pool is None:
                return True
            if not owned_by_kaito(pool.node_labels):
                log.warning("agent pool %s is not kaito's; left alone", name)
                return True
            if pool.provisioning_state != "Deleting":
                self._azure().agent_pools.begin_delete(
                    self.config.resource_group, self.config.cluster_name, name
                )
                log.info("deleting agent pool %s (NodeClaim %s deleted)", name, name)
        except ResourceNotFoundError:
            return True
        except AzureError as err:
            log.warning("deleting agent pool %s: %s", name, describe(err)[0])
        return False

    # ------------------------------------------------------------------ helpers

    def _launch_failed(self, claim: Mapping[str, Any], reason: str, message: str) -> None:
        # Karpenter leaves Launched Unknown on a create error (launch.go) and tries again later.
        self._status(claim, {}, {"Launched": ("Unknown", reason, message[:32768])})
        log.warning("NodeClaim %s: %s: %s", claim["metadata"]["name"], reason, message)

    def _hold(self, name: str) -> None:
        with self._lock:
            self._held[name] = self.clock() + self.retry

    def _may_retry(self, name: str) -> bool:
        with self._lock:
            return self.clock() >= self._held.get(name, 0.0)

    def _status(
        self, claim: Mapping[str, Any], fields: Mapping[str, Any], changes: Mapping[str, tuple[str, str, str]]
    ) -> None:
        status = {**fields, "conditions": conditions_with(claim, changes, _now())}
        self.custom.patch_cluster_custom_object_status(
            GROUP, VERSION, PLURAL, claim["metadata"]["name"], {"status": status}, _preload_content=False
        )

    def _pool_nodes(self, pool: str) -> list[dict[str, Any]]:
        # gpu-provisioner's getNodesByName: both agent pool labels AKS puts on a pool's nodes.
        import json

        selector = f"agentpool={pool},kubernetes.azure.com/agentpool={pool}"
        response: Any = self.core.list_node(label_selector=selector, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data).get("items", [])
        return [n for n in items if not n["metadata"].get("deletionTimestamp")]

    def _node(self, claim: Mapping[str, Any]) -> dict[str, Any] | None:
        provider_id = (claim.get("status") or {}).get("providerID")
        if not provider_id:
            return None
        return next(
            (
                n
                for n in self._pool_nodes(claim["metadata"]["name"])
                if n["spec"].get("providerID") == provider_id
            ),
            None,
        )

    def _label_node(self, node: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        self.core.patch_node(
            node["metadata"]["name"], {"metadata": {"labels": dict(labels)}}, _preload_content=False
        )

    def _delete_node(self, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_node(name, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
