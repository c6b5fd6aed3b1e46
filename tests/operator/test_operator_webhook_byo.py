"""The admission webhook with nodes you bring (``--provisioner byo``): KAITO's checks on the nodes a
preset Workspace selects, made on create against the nodes the API server has."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from operator_support import Cluster, wait_for, workspace_manifest
from test_operator_webhook import free_port, workspaces

from kaito_core.operator.run import OperatorThread
from kaito_core.operator.webhook import CONFIGURATION_NAME

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def byo_webhook(cluster: Cluster) -> Iterator[OperatorThread]:
    settings = cluster.config(
        provisioner="byo",
        webhook_port=free_port(),
        webhook_host="127.0.0.1",
        manage_webhook_configuration=True,
    )
    thread = OperatorThread(settings, cluster.registry).start()
    wait_for(
        lambda: (cluster.server.get("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
                                    CONFIGURATION_NAME) or {}).get("webhooks"),
        what="the webhook configuration",
    )  # fmt: skip
    yield thread
    thread.stop()


def node(name: str, apps: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"apps": apps, **labels}},
    }


def gpu(product: str = "NVIDIA-A100-SXM4-80GB", count: str = "1", memory: str = "81920") -> dict[str, str]:
    return {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": count, "nvidia.com/gpu.memory": memory}


def refused(cluster: Cluster, name: str) -> str:
    manifest = workspace_manifest(name)
    del manifest["resource"]["instanceType"]
    with pytest.raises(ApiException) as caught:
        workspaces(cluster).create_namespaced_custom_object(
            "kaito.sh", "v1beta1", "default", "workspaces", manifest
        )
    assert caught.value.status == 422
    return str(json.loads(caught.value.body)["message"])


def test_no_matching_nodes_is_refused(cluster: Cluster, byo_webhook: OperatorThread) -> None:
    assert "No nodes found matching the specified label selector" in refused(cluster, "nowhere")


def test_gpu_nodes_without_the_labels_or_that_disagree_are_refused(
    cluster: Cluster, byo_webhook: OperatorThread
) -> None:
    cluster.server.apply(node("half-labelled", "half", **{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}))
    message = refused(cluster, "half")
    assert "Failed to get GPU config from nvidia labels on node half-labelled" in message
    assert "missing required nvidia.com labels" in message
    cluster.server.apply(node("two-a100", "two", **gpu()))
    cluster.server.apply(node("two-t4", "two", **gpu(product="Tesla-T4", memory="15360")))
    assert "Non-uniform GPU product: node two-t4 has Tesla-T4 GPUs" in refused(cluster, "two")


def test_uniform_gpu_nodes_pass_and_reserved_only_selectors_are_refused(
    cluster: Cluster, byo_webhook: OperatorThread
) -> None:
    cluster.server.apply(node("good-1", "good", **gpu()))
    manifest = workspace_manifest("good")
    del manifest["resource"]["instanceType"]
    workspaces(cluster).create_namespaced_custom_object(
        "kaito.sh", "v1beta1", "default", "workspaces", manifest
    )
    reserved = workspace_manifest("reserved")
    reserved["resource"] = {"labelSelector": {"matchLabels": {"kaito.sh/workspace": "good"}}}
    with pytest.raises(ApiException) as caught:
        workspaces(cluster).create_namespaced_custom_object(
            "kaito.sh", "v1beta1", "default", "workspaces", reserved
        )
    assert (
        "matchLabels must contain at least one non-reserved label" in json.loads(caught.value.body)["message"]
    )
