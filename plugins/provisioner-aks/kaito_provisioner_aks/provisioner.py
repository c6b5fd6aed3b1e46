"""The AKS provisioner: one GPU agent pool per Workspace, through azure-mgmt-containerservice.

The operator calls ``ensure_nodes`` from a worker thread again and again until the nodes are ready,
so no call waits for Azure's long-running operations: a create is started (the SDK's poller follows
``Azure-AsyncOperation`` in the background) and the next call reads the pool's
``provisioningState`` with ``agent_pools.get``. The pool's state in ARM is the source of truth, so a
restarted operator picks up where the last one stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kaito_core.plugins import InstanceType, NodeRequest, ProvisionResult
from kaito_provisioner_aks.config import AKSConfig, ConfigError, resolve_config
from kaito_provisioner_aks.errors import AKSError, camel_reason, describe
from kaito_provisioner_aks.naming import (
    AGENTPOOL_LABEL,
    GPU_TAINT,
    node_labels_for,
    os_disk_gb,
    owned_by,
    pool_name,
    tags_for,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.polling import LROPoller
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.containerservice.models import AgentPool

log = logging.getLogger(__name__)

#: Client options unless the caller gives others: a few retries only, because the operator's worker
#: thread waits on every call (the SDK's default is 10 retries with back-off up to two minutes).
DEFAULT_CLIENT_OPTIONS: Mapping[str, Any] = {"retry_total": 3}
#: After a failed create (quota, allocation), wait this long before asking Azure again, so a
#: Workspace polled every few seconds does not spend the subscription's ARM write budget.
DEFAULT_RETRY_INTERVAL_S = 60.0


class AKSProvisioner:
    """Creates and deletes AKS agent pools for Workspaces. Registered as ``aks``."""

    name = "aks"
    #: Admission lets unlisted Azure GPU and D-series SKUs through, as KAITO's webhook does on Azure;
    #: ARM then decides (its error reaches the Workspace status).
    admitted_sku_prefixes = ("Standard_N", "Standard_D")

    def __init__(
        self,
        *,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        cluster_name: str | None = None,
        credential: TokenCredential | None = None,
        base_url: str | None = None,
        catalog: Mapping[str, InstanceType] | None = None,
        environ: Mapping[str, str] | None = None,
        client_options: Mapping[str, Any] | None = None,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Nothing here touches Azure or reads credentials: this runs in every `kaito` command.
        self._settings = (subscription_id, resource_group, cluster_name)
        self._environ = environ
        self._credential = credential
        self._base_url = base_url
        self._catalog = catalog
        options = {**DEFAULT_CLIENT_OPTIONS, **(client_options or {})}
        if options.pop("logging_enable", False):
            # azure-core's network trace writes the Authorization header, bearer token included.
            log.warning("client option logging_enable is ignored: it would log the Azure bearer token")
        self._client_options = options
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._client: ContainerServiceClient | None = None
        self._config: AKSConfig | None = None
        self._pollers: dict[str, LROPoller[Any]] = {}
        self._backoff: dict[str, tuple[float, ProvisionResult]] = {}

    # ------------------------------------------------------------------ contract

    def catalog(self) -> Mapping[str, InstanceType]:
        if self._catalog is None:
            from kaito_provisioner_aks.catalog import AKS_CATALOG

            self._catalog = AKS_CATALOG
        return self._catalog

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        # Azure's exceptions are imported in the methods that call Azure, not at module level:
        # every `kaito` command registers this plugin and must not pay for importing the SDK.
        from azure.core.exceptions import AzureError

        pool = pool_name(request.namespace, request.workspace)
        selector = {AGENTPOOL_LABEL: pool}
        invalid = self._check_request(request)
        if invalid is not None:
            return invalid
        try:
            client, config = self._connect()
        except ConfigError as err:
            return ProvisionResult(pending=request.count, error=str(err), reason="ProvisionerNotConfigured")
        with self._lock:
            held = self._backoff.get(pool)
        if held is not None and self._clock() < held[0]:
            return held[1]  # the last answer still stands; do not ask Azure again yet
        try:
            existing = self._get_pool(client, config, pool)
            if existing is None:
                return self._create(client, config, pool, request, selector, reason="NodePoolCreating")
            return self._judge(client, config, pool, existing, request, selector)
        except AzureError as err:
            message, reason = describe(err)
            result = ProvisionResult(
                pending=request.count, error=message, reason=reason, node_selector=selector
            )
            log.warning(
                "agent pool %s (workspace %s/%s): %s", pool, request.namespace, request.workspace, reason
            )
            self._hold(pool, result)
            return result
        except Exception as err:  # the contract boundary: a bug or an SDK surprise becomes a status
            log.exception("agent pool %s (workspace %s/%s)", pool, request.namespace, request.workspace)
            message, reason = describe(err)
            return ProvisionResult(
                pending=request.count, error=message, reason=reason, node_selector=selector
            )

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        pool = pool_name(namespace, workspace)
        with self._lock:
            self._backoff.pop(pool, None)
        try:
            client, config = self._connect()
        except ConfigError as err:
            raise AKSError(str(err), "ProvisionerNotConfigured") from err
        try:
            existing = self._get_pool(client, config, pool)
            if existing is None:
                with self._lock:
                    self._pollers.pop(pool, None)
                return
            if not owned_by(existing.tags, workspace, namespace):
                log.warning(
                    "agent pool %s is not kaito's pool for %s/%s; left alone", pool, namespace, workspace
                )
                return
            if existing.provisioning_state == "Deleting":
                return
            poller = client.agent_pools.begin_delete(config.resource_group, config.cluster_name, pool)
        except ResourceNotFoundError:
            return  # gone between the get and the delete: what we wanted
        except AzureError as err:
            raise AKSError(*describe(err)) from err
        with self._lock:
            self._pollers[pool] = poller
        log.info("deleting agent pool %s (workspace %s/%s)", pool, namespace, workspace)

    # ------------------------------------------------------------------ helpers

    def _check_request(self, request: NodeRequest) -> ProvisionResult | None:
        catalog = self.catalog()
        if request.instance_type not in catalog:
            supported = ", ".join(sorted(catalog))
            return ProvisionResult(
                pending=request.count,
                error=f"Unsupported instance type {request.instance_type}. Supported SKUs: {supported}",
                reason="UnsupportedInstanceType",
            )
        if request.count < 1:
            return ProvisionResult(
                error=f"resource.count must be at least 1 to create nodes, got {request.count}",
                reason="InvalidNodeCount",
            )
        return None

    def _connect(self) -> tuple[ContainerServiceClient, AKSConfig]:
        with self._lock:
            if self._client is None or self._config is None:
                config = resolve_config(*self._settings, environ=self._environ)
                from azure.mgmt.containerservice import ContainerServiceClient

                credential = self._credential
                if credential is None:
                    # Workload identity in a pod, environment or managed identity elsewhere.
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                self._client = ContainerServiceClient(
                    credential, config.subscription_id, base_url=self._base_url, **self._client_options
                )
                self._config = config
            return self._client, self._config

    @staticmethod
    def _get_pool(client: ContainerServiceClient, config: AKSConfig, pool: str) -> AgentPool | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return client.agent_pools.get(config.resource_group, config.cluster_name, pool)
        except ResourceNotFoundError:
            return None

    def _create(
        self,
        client: ContainerServiceClient,
        config: AKSConfig,
        pool: str,
        request: NodeRequest,
        selector: dict[str, str],
        reason: str,
    ) -> ProvisionResult:
        from azure.mgmt.containerservice.models import AgentPool
        from azure.mgmt.containerservice.models import (
            AgentPoolManagedClusterAgentPoolProfileProperties as PoolProperties,
        )

        properties = PoolProperties(
            count=request.count,
            vm_size=request.instance_type,
            mode="User",
            os_type="Linux",
            node_labels=node_labels_for(request),
            node_taints=[GPU_TAINT],
            os_disk_size_gb=os_disk_gb(request.disk_bytes),
            tags=tags_for(request),
        )
        body = AgentPool(properties=properties)
        # Started, not awaited: the poller follows the operation in the background.
        poller = client.agent_pools.begin_create_or_update(
            config.resource_group, config.cluster_name, pool, body
        )
        with self._lock:
            self._pollers[pool] = poller
            self._backoff.pop(pool, None)
        log.info(
            "agent pool %s (%s x %d) requested in cluster %s for workspace %s/%s",
            pool,
            request.instance_type,
            request.count,
            config.cluster_name,
            request.namespace,
            request.workspace,
        )
        return ProvisionResult(pending=request.count, reason=reason, node_selector=selector)

    def _judge(
        self,
        client: ContainerServiceClient,
        config: AKSConfig,
        pool: str,
        existing: AgentPool,
        request: NodeRequest,
        selector: dict[str, str],
    ) -> ProvisionResult:
        from azure.core.exceptions import AzureError

        if not owned_by(existing.tags, request.workspace, request.namespace):
            return ProvisionResult(
                pending=request.count,
                error=(
                    f"Agent pool {pool} already exists in cluster {config.cluster_name} and was not "
                    f"created by kaito for Workspace {request.namespace}/{request.workspace} (its tags say "
                    "otherwise); kaito will not modify it. Delete or rename that agent pool."
                ),
                reason="NodePoolConflict",
                node_selector=selector,
            )
        if (existing.vm_size or "").lower() != request.instance_type.lower():
            return ProvisionResult(
                pending=request.count,
                error=(
                    f"Agent pool {pool} runs {existing.vm_size} but the Workspace asks for "
                    f"{request.instance_type}; the VM size of an AKS agent pool cannot change. Delete the "
                    "Workspace and create it again."
                ),
                reason="InstanceTypeMismatch",
                node_selector=selector,
            )
        state = existing.provisioning_state or "Unknown"
        if state == "Succeeded":
            power = existing.power_state.code if existing.power_state is not None else None
            if power == "Stopped":
                return ProvisionResult(
                    pending=request.count,
                    error=(
                        f"Agent pool {pool} is stopped. Start it with: az aks nodepool start "
                        f"--resource-group {config.resource_group} --cluster-name {config.cluster_name} "
                        f"--nodepool-name {pool}"
                    ),
                    reason="NodePoolStopped",
                    node_selector=selector,
                )
            if existing.count != request.count:
                return self._create(client, config, pool, request, selector, reason="NodePoolScaling")
            with self._lock:
                self._pollers.pop(pool, None)
            nodes = self._machine_names(client, config, pool)
            return ProvisionResult(
                ready_nodes=nodes,
                pending=max(0, request.count - len(nodes)) if nodes else 0,
                reason="NodePoolReady",
                node_selector=selector,
            )
        if state in ("Failed", "Canceled"):
            message, reason, known = self._failure(pool, existing, state)
            result = ProvisionResult(
                pending=request.count, error=message, reason=reason, node_selector=selector
            )
            if not known:
                return result  # our poller is still learning why from the operation; ask again next time
            with self._lock:
                held = self._backoff.get(pool)
            if held is None:
                self._hold(pool, result)  # retry (a PUT reconciles a failed pool) after the interval
                return result
            try:
                self._create(client, config, pool, request, selector, reason="NodePoolRetrying")
            except AzureError as err:
                message, reason = describe(err)
                result = ProvisionResult(
                    pending=request.count, error=message, reason=reason, node_selector=selector
                )
                self._hold(pool, result)
            return result
        # Creating, Scaling, Updating, Upgrading, Starting, Deleting (an old pool on its way out), ...
        reason = f"NodePool{camel_reason(state)}"
        return ProvisionResult(pending=request.count, reason=reason, node_selector=selector)

    def _failure(self, pool: str, existing: AgentPool, state: str) -> tuple[str, str, bool]:
        """Azure's own words for why the pool failed: the pool's ``status.provisioningError``, else
        the error of the operation our poller followed. The flag is False while that poller runs."""
        from azure.core.exceptions import AzureError

        status = existing.status
        detail = status.provisioning_error if status is not None else None
        if detail is not None and detail.message:
            return detail.message, camel_reason(detail.code or "NodePoolFailed"), True
        with self._lock:
            poller = self._pollers.get(pool)
        generic = f"Agent pool {pool} is in provisioning state {state}.", f"NodePool{state}"
        if poller is None:
            return *generic, True
        if not poller.done():
            return *generic, False
        try:
            poller.result(timeout=0)
        except AzureError as err:
            return *describe(err), True
        return *generic, True

    @staticmethod
    def _machine_names(client: ContainerServiceClient, config: AKSConfig, pool: str) -> tuple[str, ...]:
        """The pool's machines; AKS names each VMSS machine like its Kubernetes Node."""
        from azure.core.exceptions import AzureError

        try:
            machines = client.machines.list(config.resource_group, config.cluster_name, pool)
            return tuple(sorted(m.name for m in machines if m.name))
        except AzureError as err:
            # Older clusters may not serve the machines API; the operator then finds the nodes by
            # the node_selector label instead.
            reason = describe(err)[1]
            log.info("listing machines of agent pool %s failed (%s); using the node selector", pool, reason)
            return ()

    def _hold(self, pool: str, result: ProvisionResult) -> None:
        with self._lock:
            self._backoff[pool] = (self._clock() + self._retry_interval_s, result)
