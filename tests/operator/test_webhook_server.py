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
from kaito_core.plugins import (
    Architecture,
    GiB,
    ModelSource,
    Preset,
    Registry,
    Requirements,
    hookimpl,
)


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


def test_admission_with_nodes_you_bring_reads_the_selected_nodes() -> None:
    """With --provisioner none a CREATE lists the Nodes by the selector's plain labels (reserved keys
    dropped) and applies KAITO's node rules; an UPDATE reads no nodes."""
    queries: list[str] = []
    node = {"metadata": {"name": "n1", "labels": {"apps": "x", "pool": "a", "nvidia.com/gpu.product": "A10",
                                                  "nvidia.com/gpu.count": "1"}}}

    def list_nodes(selector: str) -> list[dict[str, Any]]:
        queries.append(selector)
        return [node]

    body = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "w", "namespace": "default"},
        "resource": {"labelSelector": {
            "matchLabels": {"apps": "x"},
            "matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}],
        }},
        "inference": {"preset": {"name": "p"}},
    }
    preset = Preset(
        name="p", family="t", source=ModelSource(repo="example/p", revision="0" * 40), formats=(),
        architecture=Architecture(parameters=1, layers=1, attention_heads=1, kv_heads=1, head_dim=1,
                                  context_length=1),
        requirements=Requirements(gpu_count=1, total_gpu_memory=GiB, per_gpu_memory=0, disk=GiB),
        runtimes=("vllm",), default_runtime="vllm", license="MIT",
    )

    class Presets:
        @hookimpl
        def kaito_register_presets(self, register: Any) -> None:
            register(preset)

    registry = Registry()
    registry.register(Presets(), distribution="presets")
    errors, _ = admission_problems(body, None, registry, "none", list_nodes)
    assert queries == ["apps=x,pool=a"]
    assert errors == ["resource.labelSelector: Failed to get GPU config from nvidia labels on node n1: "
                      "missing "
                      "required nvidia.com labels on node n1"]
    errors, _ = admission_problems(body, body, registry, "none", list_nodes)
    assert errors == [] and queries == ["apps=x,pool=a"]


def test_conversion_review_answers_as_the_api_server_expects() -> None:
    from kaito_core.operator.conversion import conversion_review, conversion_stanza

    beta = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w"},
            "resource": {"labelSelector": {"matchLabels": {"a": "b"}}}, "status": {"state": "Ready"}}
    review = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
              "request": {"uid": "u1", "desiredAPIVersion": "kaito.sh/v1alpha1", "objects": [beta]}}
    answer = conversion_review(review)
    assert answer["kind"] == "ConversionReview" and answer["response"]["uid"] == "u1"
    assert answer["response"]["result"] == {"status": "Success"}
    [alpha] = answer["response"]["convertedObjects"]
    assert alpha["apiVersion"] == "kaito.sh/v1alpha1" and "state" not in alpha["status"]
    back = conversion_review({"request": {"uid": "u2", "desiredAPIVersion": "kaito.sh/v1beta1",
                                          "objects": [alpha]}})
    assert back["response"]["convertedObjects"] == [beta]  # nothing lost
    bad = conversion_review({"request": {"uid": "u3", "desiredAPIVersion": "kaito.sh/v2", "objects": [beta]}})
    assert bad["response"]["result"]["status"] == "Failure"
    assert "cannot convert Workspace w: unknown Workspace version" in bad["response"]["result"]["message"]
    stanza = conversion_stanza({"service": {"name": "s", "namespace": "n", "port": 443, "path": "/validate"},
                                "caBundle": "Q0E="})
    client = {"service": {"name": "s", "namespace": "n", "port": 443, "path": "/validate/convert"},
              "caBundle": "Q0E="}
    webhook = {"conversionReviewVersions": ["v1"], "clientConfig": client}
    assert stanza == {"strategy": "Webhook", "webhook": webhook}
