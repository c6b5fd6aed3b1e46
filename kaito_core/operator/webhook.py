"""The validating admission webhook: the same rules as ``kaito validate`` (kaito_core.api).

The webhook server is kopf's, over TLS; it also serves the conversion webhook (conversion.py).
Without a certificate from the user, the operator makes a self-signed one at start-up for the names
the API server uses; with ``manage_webhook_configuration`` kopf writes that certificate's CA bundle
into the ValidatingWebhookConfiguration (and the operator into the CRD's conversion webhook).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import kopf
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from kaito_core.api import Workspace, validate_workspace
from kaito_core.api.selectors import SelectorError, sanitized_labels, selector_as_map
from kaito_core.operator.certs import self_signed_certificate
from kaito_core.operator.config import BYO_ALIASES, NODECLAIM_MODES, OperatorConfig
from kaito_core.operator.conversion import with_conversion
from kaito_core.plugins import Registry

log = logging.getLogger("kaito.operator")
WEBHOOK_PATH = "/validate"
CONFIGURATION_NAME = "kaito-workspace-validation"


def admission_problems(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    registry: Registry | None,
    provisioner: str,
    list_nodes: Callable[[str], list[dict[str, Any]]] | None = None,
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a Workspace on CREATE (``old`` None) or UPDATE.

    With no provisioner (nodes you bring), a CREATE reads the Nodes the selector matches through
    ``list_nodes`` (a label query such as ``apps=phi-3``), as KAITO's webhook lists them.
    """

    def parse(manifest: Mapping[str, Any]) -> Workspace:
        return Workspace.model_validate({k: v for k, v in manifest.items() if k != "status"})

    try:
        ws = parse(body)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()], []
    previous: Workspace | None = None
    if old:
        try:
            previous = parse(old)
        except ValidationError:
            previous = None  # an old object that no longer parses does not block fixing it
    nodes: list[dict[str, Any]] | None = None
    if provisioner in BYO_ALIASES:
        nodes = []
        if previous is None and list_nodes is not None:
            try:
                labels = sanitized_labels(selector_as_map(ws.resource.label_selector))
            except SelectorError:
                labels = None  # reported by the selector rule; no nodes are read
            if labels:
                query = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                try:
                    nodes = list_nodes(query)
                except (ApiException, OSError) as exc:
                    return [f"Failed to list nodes with labelSelector: {exc}"], []
    # NodeClaim modes have no plugin of their own: instance types are sized by every installed catalog.
    claims = provisioner in NODECLAIM_MODES
    in_process = provisioner not in BYO_ALIASES and not claims
    problems = validate_workspace(
        ws, registry, old=previous, provisioner=provisioner if in_process else None, nodes=nodes,
        node_claims=claims,
    )
    return [str(p) for p in problems if p.is_error], [str(p) for p in problems if not p.is_error]


class ConvertingWebhookServer(kopf.WebhookServer):
    """kopf's server, also answering ConversionReviews at ``<path>/convert``; ``on_client_config`` is
    called with each client config it advertises (the operator points the CRD's conversion at it)."""

    on_client_config: Callable[[dict[str, Any]], None] | None = None

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for client_config in self._configs(with_conversion(fn)):
            if self.on_client_config is not None:
                callback = self.on_client_config
                try:
                    await asyncio.get_running_loop().run_in_executor(None, callback, dict(client_config))
                except (ApiException, OSError) as exc:
                    log.warning("could not point the Workspace CRD at the conversion webhook: %s", exc)
            yield client_config

    def _configs(self, fn: Any) -> AsyncIterator[Any]:
        return super().__call__(fn)


class ServiceWebhookServer(ConvertingWebhookServer):
    """kopf's server, advertised to the API server through a Service instead of a URL."""

    def __init__(
        self, *, service_name: str, service_namespace: str, service_port: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service = {"name": service_name, "namespace": service_namespace, "port": service_port}

    async def _configs(self, fn: Any) -> AsyncIterator[Any]:
        async for client_config in super()._configs(fn):
            config: dict[str, Any] = {"service": {**self.service, "path": self.path or ""}}
            if "caBundle" in client_config:
                config["caBundle"] = client_config["caBundle"]
            yield config


def webhook_server(config: OperatorConfig) -> kopf.WebhookServer:
    """The server for ``settings.admission.server``."""
    host = config.webhook_host or "127.0.0.1"
    cert, key = config.webhook_cert, config.webhook_key
    cadata: bytes | None = None
    if not cert or not key:
        directory = Path(tempfile.mkdtemp(prefix="kaito-webhook-"))
        names = (
            [host]
            if "." not in host or host.replace(".", "").isdigit()
            else [host, host.split(".")[0], ".".join(host.split(".")[:2])]
        )
        cert_path, key_path = self_signed_certificate(names, directory)
        cert, key = str(cert_path), str(key_path)
        cadata = cert_path.read_bytes()
    else:
        cadata = Path(cert).read_bytes()
    common: dict[str, Any] = {
        "addr": "0.0.0.0" if config.webhook_host else "127.0.0.1",  # noqa: S104
        "port": config.webhook_port,
        "path": WEBHOOK_PATH,
        "certfile": cert,
        "pkeyfile": key,
        "cadata": cadata,
    }
    if config.webhook_host and config.webhook_host.endswith(".svc"):
        service, namespace = config.webhook_host.split(".")[:2]
        return ServiceWebhookServer(
            service_name=service,
            service_namespace=namespace,
            service_port=config.webhook_port or 443,
            host=config.webhook_host,
            **common,
        )
    return ConvertingWebhookServer(host=host, **common)
