"""Start the operator: kopf settings, login through the official client's configuration, the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from kaito_core.operator.config import FINALIZER, KARPENTER, OperatorConfig
from kaito_core.operator.conversion import crd_patch
from kaito_core.operator.handlers import build_registry
from kaito_core.operator.kube import NC_GROUP, NC_PLURAL, NC_VERSION, Kube, load_api_client
from kaito_core.operator.reconcile import Reconciler
from kaito_core.operator.webhook import CONFIGURATION_NAME, ConvertingWebhookServer, webhook_server
from kaito_core.plugins import Registry

ANNOTATION_PREFIX = "operator.kaito.sh"


def operator_settings(config: OperatorConfig, watch_timeout: float = 300.0) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    # kopf's own bookkeeping goes to annotations, not into the Workspace status the CRD describes
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = watch_timeout
    settings.watching.client_timeout = watch_timeout + 30
    settings.watching.inactivity_timeout = watch_timeout + 60
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60
    if config.webhook_port is not None:
        settings.admission.server = webhook_server(config)
        if config.manage_webhook_configuration:
            settings.admission.managed = CONFIGURATION_NAME
    return settings


class MissingCRD(RuntimeError):
    """A CRD the operator reads or writes but does not own is not installed; the message says which."""


def check_crds(kube: Kube, config: OperatorConfig) -> None:
    """At start-up: the NodeClaim CRD in the NodeClaim modes, and the node class CRD for Karpenter
    (Azure's gpu-provisioner ships no node class CRD; Karpenter refuses claims whose class is missing)."""
    if not config.writes_nodeclaims:
        return
    wanted = [
        (NC_GROUP, NC_VERSION, NC_PLURAL, "NodeClaim", "Karpenter's CRDs (karpenter.sh_nodeclaims.yaml)")
    ]
    node_class = config.claim_node_class()
    if config.provisioner == KARPENTER and node_class.version:
        wanted.append((node_class.group, node_class.version, node_class.plural, node_class.kind,
                       "the Karpenter provider's CRDs"))  # fmt: skip
    for group, version, plural, kind, source in wanted:
        if not kube.serves(group, version, plural):
            raise MissingCRD(
                f"--provisioner {config.provisioner}: the API server does not serve {kind} "
                f"({plural}.{group}/{version}); install {source} before starting the operator, "
                "or choose another --provisioner (byo, or a provisioner plugin)"
            )


def connection_info(api: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the official client's Configuration (kubeconfig or in-cluster)."""
    conf = api.configuration
    token = (conf.api_key or {}).get("authorization") or (conf.api_key or {}).get("BearerToken") or ""
    if token.lower().startswith("bearer "):
        token = token[7:]
    return kopf.ConnectionInfo(
        server=conf.host,
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        scheme="Bearer" if token else None,
        token=token or None,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
    )


async def operate(
    config: OperatorConfig,
    plugins: Registry,
    *,
    stop_flag: Any = None,
    ready_flag: Any = None,
    watch_timeout: float = 300.0,
) -> None:
    api = load_api_client(config.kubeconfig, pool=config.concurrency + 4)
    kube = Kube(api)
    await asyncio.to_thread(check_crds, kube, config)
    reconciler = Reconciler(kube, plugins, config)
    registry = build_registry(reconciler, config, plugins)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        if config.kubeconfig is None and api.configuration.refresh_api_key_hook is not None:
            api.configuration.refresh_api_key_hook(api.configuration)  # a rotated in-cluster token
        return connection_info(api)

    settings = operator_settings(config, watch_timeout)
    server = settings.admission.server
    if config.manage_webhook_configuration and isinstance(server, ConvertingWebhookServer):
        kube = reconciler.kube

        def point_crd_at(client_config: dict[str, Any]) -> None:
            kube.patch_crd(*crd_patch(client_config))

        server.on_client_config = point_crd_at

    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="kaito-api")
    )
    await kopf.operator(
        registry=registry,
        settings=settings,
        standalone=config.peering is None,
        peering_name=config.peering,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=config.liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run_operator(config: OperatorConfig, plugins: Registry) -> None:
    """Block running the operator until SIGINT/SIGTERM; a missing CRD stops it with its message."""
    asyncio.run(operate(config, plugins))


class OperatorThread:
    """The operator in a background thread with its own loop (tests and benchmarks)."""

    def __init__(self, config: OperatorConfig, plugins: Registry, watch_timeout: float = 30.0) -> None:
        self.config, self.plugins, self.watch_timeout = config, plugins, watch_timeout
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="kaito-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(
                operate(
                    self.config,
                    self.plugins,
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready_flag,
                    watch_timeout=self.watch_timeout,
                )
            )
        except BaseException as exc:  # reported to the test through .error
            self.error = exc

    def start(self, timeout: float = 30.0) -> OperatorThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.ready_flag.wait(0.05):
            if not self.thread.is_alive() and self.error is not None:
                raise self.error  # it stopped before it was ready (a missing CRD): its own message
            if time.monotonic() > deadline:
                raise TimeoutError(f"the operator did not start within {timeout}s: {self.error!r}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_flag.set()
        self.thread.join(timeout)
