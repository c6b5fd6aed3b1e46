"""The in-cluster webhook server advertises itself through its Service, with the CA bundle of the
certificate the operator made for the Service's DNS names."""

from __future__ import annotations

import base64
import socket
import ssl
from typing import Any

from cryptography import x509

from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.webhook import ServiceWebhookServer, admission_problems, webhook_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_service_client_config_with_ca_bundle() -> None:
    port = free_port()
    server = webhook_server(
        OperatorConfig(webhook_port=port, webhook_host="kaito-operator-webhook.kaito-system.svc")
    )
    assert isinstance(server, ServiceWebhookServer)

    async def handler(*_: Any, **__: Any) -> dict[str, Any]:
        return {}

    generator = server(handler)  # type: ignore[arg-type]
    config = await generator.__anext__()
    await generator.aclose()
    assert config["service"] == {
        "name": "kaito-operator-webhook",
        "namespace": "kaito-system",
        "port": port,
        "path": "/validate",
    }
    cert = x509.load_pem_x509_certificate(base64.b64decode(config["caBundle"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert "kaito-operator-webhook.kaito-system.svc" in names and "kaito-operator-webhook" in names
    ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())  # a usable CA


def test_admission_without_plugins_reports_structure_errors() -> None:
    errors, warnings = admission_problems(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": "x"},
            "resource": {"countt": 1},
        },
        None,
        None,
        "none",
    )
    assert errors and any("countt" in e or "labelSelector" in e for e in errors) and warnings == []
