"""An in-process emulator of the Azure Resource Manager agentPools API, for tests and demos.

No Azure is reachable from CI, so the provisioner is tested against this: a real HTTPS server on
127.0.0.1 that speaks the REST shape the real ``ContainerServiceClient`` expects, so the SDK's own
pipeline (bearer-token policy, error mapping, the LRO poller following ``Azure-AsyncOperation``) runs
unmodified. It serves TLS with a throw-away self-signed certificate (``ca_file``), because the SDK's
bearer-token policy refuses plain HTTP, and the point is to change nothing in the client.

What it emulates, as AKS does it:

- ``PUT .../agentPools/{pool}``: validates the pool name (AKS's Linux rule), the VM size against the
  region's SKUs, the OS disk size, reserved node-label prefixes and the per-family vCPU quota; answers
  201 (create) or 200 (update) with ``provisioningState`` ``Creating``/``Scaling``/``Updating`` and an
  ``Azure-AsyncOperation`` header; the operation finishes after ``operation_seconds``.
- ``GET .../agentPools/{pool}``, ``GET .../agentPools``, ``GET .../agentPools/{pool}/machines``.
- ``DELETE .../agentPools/{pool}``: 202 with ``Azure-AsyncOperation`` and ``Location``; 204 when absent.
- Errors in ARM's ``{"error": {"code", "message"}}`` shape with ARM's status codes: 401
  InvalidAuthenticationToken, 403 AuthorizationFailed, 404 ResourceNotFound / ResourceGroupNotFound /
  SubscriptionNotFound, 400 QuotaExceeded (AKS's preflight text around Compute's quota message),
  400 InvalidParameter, 409 OperationNotAllowed (an operation in progress, a stopped cluster), and
  asynchronous failures (``fail_next_create``) that end the operation ``Failed`` and leave the pool
  ``Failed`` with ``status.provisioningError``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

from kaito_core.operator.certs import self_signed_certificate

#: AKS's rule for Linux agent pool names.
POOL_NAME_RULE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
RESERVED_LABEL_PREFIXES = ("kubernetes.azure.com/",)
POOL_WRITE = "Microsoft.ContainerService/managedClusters/agentPools/write"
POOL_READ = "Microsoft.ContainerService/managedClusters/agentPools/read"
POOL_DELETE = "Microsoft.ContainerService/managedClusters/agentPools/delete"
LOOPBACK = "127.0.0.1"
TERMINAL = frozenset({"Succeeded", "Failed", "Canceled"})


@dataclass(frozen=True)
class VmSku:
    name: str
    family: str  # the Compute quota family, as Azure names it
    vcpus: int


#: GPU sizes offered in the emulated region (vCPUs from Azure's size tables).
DEFAULT_SKUS: tuple[VmSku, ...] = (
    VmSku("Standard_NC6s_v3", "standardNCSv3Family", 6),
    VmSku("Standard_NC12s_v3", "standardNCSv3Family", 12),
    VmSku("Standard_NC24s_v3", "standardNCSv3Family", 24),
    VmSku("Standard_NC24rs_v3", "standardNCSv3Family", 24),
    VmSku("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4),
    VmSku("Standard_NC8as_T4_v3", "standardNCASv3_T4Family", 8),
    VmSku("Standard_NC16as_T4_v3", "standardNCASv3_T4Family", 16),
    VmSku("Standard_NC64as_T4_v3", "standardNCASv3_T4Family", 64),
    VmSku("Standard_NV36ads_A10_v5", "StandardNVADSA10v5Family", 36),
    VmSku("Standard_NV72ads_A10_v5", "StandardNVADSA10v5Family", 72),
    VmSku("Standard_NC24ads_A100_v4", "StandardNCADSA100v4Family", 24),
    VmSku("Standard_NC48ads_A100_v4", "StandardNCADSA100v4Family", 48),
    VmSku("Standard_NC96ads_A100_v4", "StandardNCADSA100v4Family", 96),
    VmSku("Standard_ND96asr_v4", "standardNDASv4_A100Family", 96),
    VmSku("Standard_ND96amsr_A100_v4", "standardNDAMSv4_A100Family", 96),
    VmSku("Standard_NC40ads_H100_v5", "standardNCadsH100v5Family", 40),
    VmSku("Standard_NC80adis_H100_v5", "standardNCadsH100v5Family", 80),
    VmSku("Standard_ND96isr_H100_v5", "standardNDSH100v5Family", 96),
    VmSku("Standard_ND96isr_H200_v5", "standardNDSH200v5Family", 96),
    VmSku("Standard_D4s_v3", "standardDSv3Family", 4),
)

ALLOCATION_FAILED = (
    "AllocationFailed",
    "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. "
    "Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance",
)


class FakeCredential:
    """A TokenCredential that hands out one fixed bearer token (never a real secret)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or f"fake-arm-token-{uuid.uuid4().hex}"
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class _Pool:
    name: str
    properties: dict[str, Any]
    state: str
    created: float = field(default_factory=time.time)


@dataclass
class _Operation:
    id: str
    pool: str
    kind: str  # "create" | "update" | "delete"
    done_at: float
    started: str
    status: str = "InProgress"
    error: dict[str, str] | None = None


class _ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


class FakeARM:
    """The emulator. Use as a context manager; ``client_kwargs()`` returns what the real
    ``ContainerServiceClient`` needs to talk to it."""

    def __init__(
        self,
        *,
        subscription_id: str = "00000000-0000-0000-0000-000000000001",
        resource_group: str = "kaito-rg",
        cluster_name: str = "kaito-aks",
        location: str = "eastus",
        credential: FakeCredential | None = None,
        quota: dict[str, int] | None = None,
        skus: tuple[VmSku, ...] = DEFAULT_SKUS,
        operation_seconds: float = 0.2,
        principal_id: str = "3f9d1c1e-5a8b-4c5e-9a43-2b7d0c9e1f00",
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.cluster_name = cluster_name
        self.location = location
        self.credential = credential or FakeCredential()
        self.quota = dict(quota) if quota is not None else {}
        self.default_quota = 1000  # vCPUs per family when ``quota`` does not name it
        self.skus = {s.name.lower(): s for s in skus}
        self.operation_seconds = operation_seconds
        self.principal_id = principal_id
        #: Actions the caller's identity lacks (e.g. ``POOL_WRITE``): answered 403 AuthorizationFailed.
        self.denied_actions: set[str] = set()
        self.cluster_stopped = False
        #: False emulates a cluster/API version without the machines API (ARM answers 404).
        self.serve_machines = True
        #: False emulates API versions whose pools carry no ``status.provisioningError``: the reason
        #: for a failure is then only in the failed operation.
        self.report_provisioning_error = True
        #: (code, message) to end the next create operation with, asynchronously.
        self.fail_next_create: tuple[str, str] | None = None
        #: Every request: (method, path without query, status).
        self.requests: list[tuple[str, str, int]] = []
        #: Every request body that was JSON, by (method, path).
        self.bodies: list[tuple[str, str, dict[str, Any]]] = []
        #: Every ARM error sent, as its {"code", "message"} object.
        self.errors: list[dict[str, str]] = []
        self._pools: dict[str, _Pool] = {}
        self._operations: dict[str, _Operation] = {}
        self._lock = threading.RLock()
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-arm-")
        self.ca_file = str(Path(self._tmp.name) / "tls.crt")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeARM:
        # Its own trust anchor for 127.0.0.1; clients verify against ca_file.
        cert_path, key_path = self_signed_certificate([LOOPBACK], Path(self._tmp.name), days=1)
        self.ca_file, key_file = str(cert_path), str(key_path)
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-arm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tmp.cleanup()

    def __enter__(self) -> FakeARM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeARM.start() first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ContainerServiceClient`` (and so for ``AKSProvisioner``)."""
        return {"connection_verify": self.ca_file, "polling_interval": 0.05, "retry_total": 0}

    # ---------------------------------------------------------------- inspection helpers

    def pool(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            self._settle()
            pool = self._pools.get(name)
            return None if pool is None else self._pool_json(pool)

    def pool_names(self) -> list[str]:
        with self._lock:
            self._settle()
            return sorted(self._pools)

    def machines(self, name: str) -> list[dict[str, Any]]:
        """The machines of a pool as ``GET .../machines`` lists them (none until it has VMs)."""
        with self._lock:
            self._settle()
            pool = self._pools.get(name)
            return [] if pool is None else self._machines(pool)

    def count(self, method: str, path_suffix: str = "") -> int:
        """How many requests of ``method`` went to a path ending with ``path_suffix``."""
        return sum(1 for m, p, _ in self.requests if m == method and p.endswith(path_suffix))

    def set_power_state(self, name: str, code: str) -> None:
        """What ``az aks nodepool stop`` / ``start`` leave behind (``Stopped`` / ``Running``)."""
        with self._lock:
            self._pools[name].properties["powerState"] = {"code": code}

    def finish_operations(self) -> None:
        """End every running operation now (instead of waiting ``operation_seconds``)."""
        with self._lock:
            for op in self._operations.values():
                op.done_at = min(op.done_at, time.monotonic())
            self._settle()

    # ---------------------------------------------------------------- request handling

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        split = urlsplit(raw_path)
        path = split.path
        query = parse_qs(split.query)
        try:
            with self._lock:
                self._settle()
                status, payload, extra = self._route(method, path, query, headers, body)
        except _ArmError as err:
            status, payload, extra = err.status, {"error": {"code": err.code, "message": err.message}}, {}
            with self._lock:
                self.errors.append(payload["error"])
        with self._lock:
            self.requests.append((method, path, status))
        return status, payload, extra

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.credential.token}":
            raise _ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if "api-version" not in query:
            raise _ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        op = re.fullmatch(
            r"/subscriptions/([^/]+)/providers/Microsoft\.ContainerService/locations/([^/]+)/"
            r"(operations|operationresults)/([^/]+)",
            path,
            re.IGNORECASE,
        )
        if op:
            self._check_subscription(op.group(1))
            return self._operation(op.group(4), op.group(3).lower() == "operationresults")
        m = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ContainerService/"
            r"managedClusters/([^/]+)/agentPools(?:/([^/]+)(/machines)?)?",
            path,
            re.IGNORECASE,
        )
        if not m:
            raise _ArmError(
                404, "InvalidResourceType", f"The resource type could not be found for path {path}."
            )
        sub, rg, cluster, pool, machines = m.groups()
        self._check_subscription(sub)
        if rg.lower() != self.resource_group.lower():
            raise _ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        scope = path
        if method == "GET":
            self._authorize(POOL_READ, scope)
            self._check_cluster(cluster, rg)
            if pool is None:
                return 200, {"value": [self._pool_json(p) for p in self._pools.values()]}, {}
            record = self._existing(pool, cluster, rg)
            if machines:
                if not self.serve_machines:
                    raise _ArmError(
                        404,
                        "InvalidResourceType",
                        "The resource type 'managedClusters/agentPools/machines' could not be found in the "
                        "namespace 'Microsoft.ContainerService' for api version in use.",
                    )
                return 200, {"value": self._machines(record)}, {}
            return 200, self._pool_json(record), {}
        if method == "PUT" and pool is not None and not machines:
            self._authorize(POOL_WRITE, scope)
            self._check_cluster(cluster, rg)
            return self._put(pool, body, path)
        if method == "DELETE" and pool is not None and not machines:
            self._authorize(POOL_DELETE, scope)
            self._check_cluster(cluster, rg)
            return self._delete(pool, path)
        raise _ArmError(405, "MethodNotAllowed", f"The HTTP method '{method}' is not supported for {path}.")

    def _check_subscription(self, sub: str) -> None:
        if sub.lower() != self.subscription_id.lower():
            raise _ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")

    def _check_cluster(self, cluster: str, rg: str) -> None:
        if cluster.lower() != self.cluster_name.lower():
            raise _ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerService/managedClusters/{cluster}' under resource group "
                f"'{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )

    def _authorize(self, action: str, scope: str) -> None:
        if action in self.denied_actions:
            raise _ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{self.principal_id}' with object id '{self.principal_id}' does not have "
                f"authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. "
                "If access was recently granted, please refresh your credentials.",
            )

    def _existing(self, pool: str, cluster: str, rg: str) -> _Pool:
        record = self._pools.get(pool)
        if record is None:
            raise _ArmError(
                404,
                "NotFound",
                f"Agent pool '{pool}' in managed cluster '{cluster}' of resource group '{rg}' was not found.",
            )
        return record

    # ---------------------------------------------------------------- PUT / DELETE

    def _put(self, name: str, body: bytes, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            doc = json.loads(body or b"{}")
        except ValueError as err:
            raise _ArmError(400, "InvalidRequestContent", f"The request content was invalid: {err}") from err
        self.bodies.append(("PUT", path, doc))
        props = dict(doc.get("properties") or {})
        if not POOL_NAME_RULE.fullmatch(name):
            raise _ArmError(
                400,
                "InvalidParameter",
                f"The value of parameter agentPoolProfile.name is invalid: '{name}'. Linux agent pool names "
                "must start with a lowercase letter, contain only lowercase letters and numbers, and be "
                "1-12 characters long. Please see https://aka.ms/aks-naming-rules for more details.",
            )
        if self.cluster_stopped:
            raise _ArmError(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed because managed cluster '{self.cluster_name}' is in stopped "
                "state. "
                "Please start the cluster with 'az aks start' before making changes.",
            )
        vm_size = str(props.get("vmSize") or "")
        sku = self.skus.get(vm_size.lower())
        if sku is None:
            raise _ArmError(
                400,
                "InvalidParameter",
                f"The VM size of {vm_size or '<empty>'} is not allowed in your subscription in location "
                f"'{self.location}'. For more details, please visit https://aka.ms/cpu-quota",
            )
        count = props.get("count", 1)
        if not isinstance(count, int) or not 0 <= count <= 1000:
            raise _ArmError(400, "InvalidParameter", f"The value of parameter count is invalid: {count!r}.")
        disk = props.get("osDiskSizeGB")
        if disk is not None and not 30 <= int(disk) <= 2048:
            raise _ArmError(
                400,
                "InvalidParameter",
                f"The value of parameter agentPoolProfile.osDiskSizeGB is invalid: {disk}. "
                "It must be between 30 and 2048.",
            )
        for label in props.get("nodeLabels") or {}:
            if any(label.startswith(prefix) for prefix in RESERVED_LABEL_PREFIXES):
                raise _ArmError(
                    400,
                    "InvalidParameter",
                    f"Node label '{label}' uses a reserved prefix; labels under kubernetes.azure.com/ "
                    "are set by AKS.",
                )
        existing = self._pools.get(name)
        if existing is not None and existing.state not in TERMINAL:
            raise _ArmError(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed because there's an in progress {existing.state.lower()} node pool "
                f"operation on agent pool '{name}'. Please wait for it to finish before starting a new "
                "operation.",
            )
        if existing is not None and str(existing.properties.get("vmSize", "")).lower() != vm_size.lower():
            raise _ArmError(
                400,
                "InvalidParameter",
                f"Changing property 'vmSize' of agent pool '{name}' is not allowed.",
            )
        self._check_quota(sku, count, existing)
        props["vmSize"] = sku.name
        props.setdefault("osDiskSizeGB", 128)
        props.setdefault("type", "VirtualMachineScaleSets")
        props.setdefault("mode", "User")
        props.setdefault("osType", "Linux")
        props.setdefault("osSKU", "Ubuntu")
        props["orchestratorVersion"] = "1.32.7"
        props["currentOrchestratorVersion"] = "1.32.7"
        props["nodeImageVersion"] = "AKSUbuntu-2204gen2containerd-202511.04.0"
        props["powerState"] = {"code": "Running"}
        if existing is None:
            kind, status, state = "create", 201, "Creating"
            self._pools[name] = _Pool(name=name, properties=props, state=state)
        else:
            kind, status = "update", 200
            state = "Scaling" if props.get("count") != existing.properties.get("count") else "Updating"
            existing.properties = props
            existing.state = state
        record = self._pools[name]
        record.properties.pop("status", None)
        headers = self._start_operation(name, kind)
        return status, self._pool_json(record), headers

    def _check_quota(self, sku: VmSku, count: int, existing: _Pool | None) -> None:
        usage = 0
        for pool in self._pools.values():
            other = self.skus.get(str(pool.properties.get("vmSize", "")).lower())
            if other is not None and other.family == sku.family and pool.state != "Failed":
                usage += other.vcpus * int(pool.properties.get("count", 0))
        current = sku.vcpus * int(existing.properties.get("count", 0)) if existing is not None else 0
        required = sku.vcpus * count - current
        limit = self.quota.get(sku.family, self.default_quota)
        if required > 0 and usage + required > limit:
            raise _ArmError(
                400,
                "QuotaExceeded",
                "Preflight validation check for resource(s) for container service "
                f"{self.cluster_name} in resource group MC_{self.resource_group}_{self.cluster_name}_"
                f"{self.location} failed. Message: Operation could not be completed as it results in "
                f"exceeding approved {sku.family} Cores quota. Additional details - Deployment Model: "
                f"Resource Manager, Location: {self.location}, Current Limit: {limit}, Current Usage: "
                f"{usage}, Additional Required: {required}, (Minimum) New Limit Required: "
                f"{usage + required}. Submit a request for Quota increase at "
                "https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView/"
                f"Parameters/%7B%22subscriptionId%22:%22{self.subscription_id}%22,%22command%22:"
                "%22openQuotaApprovalBlade%22%7D by specifying parameters listed in the \u2018Details\u2019 "
                "section for deployment to succeed. Please read more about quota limits at "
                "https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests",
            )

    def _delete(self, name: str, path: str) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        record = self._pools.get(name)
        if record is None:
            return 204, None, {}  # ARM: deleting what is not there succeeds with No Content
        if record.state not in TERMINAL:
            raise _ArmError(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed because there's an in progress {record.state.lower()} node pool "
                f"operation on agent pool '{name}'. Please wait for it to finish before starting a new "
                "operation.",
            )
        record.state = "Deleting"
        headers = self._start_operation(name, "delete")
        return 202, None, headers

    def _start_operation(self, pool: str, kind: str) -> dict[str, str]:
        op_id = str(uuid.uuid4())
        self._operations[op_id] = _Operation(
            id=op_id,
            pool=pool,
            kind=kind,
            done_at=time.monotonic() + self.operation_seconds,
            started=_now_iso(),
        )
        prefix = (
            f"{self.base_url}/subscriptions/{self.subscription_id}/providers/Microsoft.ContainerService/"
            f"locations/{self.location}"
        )
        return {
            "Azure-AsyncOperation": f"{prefix}/operations/{op_id}?api-version=2016-03-30",
            "Location": f"{prefix}/operationresults/{op_id}?api-version=2016-03-30",
        }

    # ---------------------------------------------------------------- operations

    def _settle(self) -> None:
        """Move every operation whose time has come to its end state."""
        now = time.monotonic()
        for op in self._operations.values():
            if op.status != "InProgress" or now < op.done_at:
                continue
            pool = self._pools.get(op.pool)
            if op.kind == "delete":
                self._pools.pop(op.pool, None)
                op.status = "Succeeded"
                continue
            if pool is None:
                op.status = "Canceled"
                continue
            failure = self.fail_next_create if op.kind == "create" else None
            if failure is not None:
                self.fail_next_create = None
                code, message = failure
                op.status, op.error = "Failed", {"code": code, "message": message}
                pool.state = "Failed"
                if self.report_provisioning_error:
                    pool.properties["status"] = {"provisioningError": {"code": code, "message": message}}
            else:
                op.status = "Succeeded"
                pool.state = "Succeeded"

    def _operation(self, op_id: str, result: bool) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        op = self._operations.get(op_id)
        if op is None:
            raise _ArmError(404, "NotFound", f"Operation '{op_id}' was not found.")
        if result:  # the Location (operationresults) endpoint: 202 while running, then 204
            return (202, None, {"Retry-After": "0"}) if op.status == "InProgress" else (204, None, {})
        doc: dict[str, Any] = {
            "id": f"/subscriptions/{self.subscription_id}/providers/Microsoft.ContainerService/locations/"
            f"{self.location}/operations/{op.id}",
            "name": op.id,
            "status": op.status,
            "startTime": op.started,
        }
        if op.status != "InProgress":
            doc["endTime"] = _now_iso()
        if op.error is not None:
            doc["error"] = op.error
        return 200, doc, {}

    # ---------------------------------------------------------------- representations

    def _pool_id(self, name: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{self.cluster_name}/agentPools/{name}"
        )

    def _pool_json(self, pool: _Pool) -> dict[str, Any]:
        props = dict(pool.properties)
        props["provisioningState"] = pool.state
        return {
            "id": self._pool_id(pool.name),
            "name": pool.name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": props,
        }

    def _machines(self, pool: _Pool) -> list[dict[str, Any]]:
        if pool.state not in ("Succeeded", "Scaling", "Updating"):
            return []
        # AKS names VMSS nodes aks-<pool>-<8 digits>-vmss<6 base-36 digits>; the Kubernetes Node has
        # the same name.
        digits = int(hashlib.sha256(pool.name.encode()).hexdigest(), 16) % 10**8
        vmss = f"aks-{pool.name}-{digits:08d}-vmss"
        node_rg = f"MC_{self.resource_group}_{self.cluster_name}_{self.location}"
        machines = []
        for i in range(int(pool.properties.get("count", 0))):
            name = f"{vmss}{_base36(i):0>6}"
            machines.append(
                {
                    "id": f"{self._pool_id(pool.name)}/machines/{name}",
                    "name": name,
                    "type": "Microsoft.ContainerService/managedClusters/agentPools/machines",
                    "properties": {
                        "resourceId": f"/subscriptions/{self.subscription_id}/resourceGroups/{node_rg}/"
                        f"providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{i}",
                        "network": {"ipAddresses": [{"family": "IPv4", "ip": f"10.224.0.{4 + i}"}]},
                    },
                }
            )
        return machines


def _base36(number: int) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = alphabet[rem] + out
        if number == 0:
            return out


def _make_handler(fake: FakeARM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, extra = fake.handle(self.command, self.path, headers, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is ``fake.requests``."""

    return Handler
