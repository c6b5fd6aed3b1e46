"""Nodes the user brings (provisioner `none`): found by the label selector, planned for by their GPU
labels, waited for until Ready with nvidia.com/gpu capacity."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from operator_support import Cluster, wait_for, workspace_manifest
from test_operator_scenarios import children, create

from kaito_core.operator.run import OperatorThread

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def byo_operator(cluster: Cluster) -> Iterator[OperatorThread]:
    thread = OperatorThread(cluster.config(provisioner="none"), cluster.registry).start()
    yield thread
    thread.stop()


def gpu_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "apps": "mine",
                "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                "nvidia.com/gpu.count": "1",
                "nvidia.com/gpu.memory": "81920",
            },
        },
    }


def test_brought_nodes_are_found_waited_for_and_planned(
    cluster: Cluster, byo_operator: OperatorThread
) -> None:
    manifest = workspace_manifest("mine")
    del manifest["resource"]["instanceType"]
    create(cluster, manifest)
    cond = wait_for(lambda: cluster.condition("mine", "ResourceReady"), what="ResourceReady")
    assert (cond["status"], cond["reason"]) == ("False", "NodesNotFound")
    cluster.server.apply(gpu_node("my-gpu-node"))
    wait_for(
        lambda: (cluster.condition("mine", "ResourceReady") or {}).get("message", "").startswith("0/1"),
        what="NodesNotReady",
    )
    cluster.server.patch_status(
        "v1",
        "Node",
        "my-gpu-node",
        "",
        {
            "conditions": [{"type": "Ready", "status": "True"}],
            "capacity": {"nvidia.com/gpu": "1", "cpu": "24", "memory": "220Gi"},
            "allocatable": {"nvidia.com/gpu": "1", "cpu": "23", "memory": "200Gi"},
        },
    )
    wait_for(lambda: len(children(cluster, "mine")) == 3, what="the children")
    cluster.kubelet.deployment_ready("default", "mine")
    wait_for(
        lambda: (cluster.condition("mine", "WorkspaceSucceeded") or {}).get("status") == "True",
        what="WorkspaceSucceeded",
    )
    ws = cluster.workspace("mine")
    assert ws is not None and ws["status"]["workerNodes"] == ["my-gpu-node"]
    assert cluster.provisioner.deleted == []  # no provisioner involved


def _ready_gpu_node(cluster: Cluster, name: str, apps: str, product: str = "NVIDIA-A100-SXM4-80GB") -> None:
    node = gpu_node(name)
    node["metadata"]["labels"].update({"apps": apps, "nvidia.com/gpu.product": product})
    cluster.server.apply(node)
    cluster.server.patch_status("v1", "Node", name, "", {
        "conditions": [{"type": "Ready", "status": "True"}],
        "capacity": {"nvidia.com/gpu": "1", "cpu": "24", "memory": "220Gi"},
        "allocatable": {"nvidia.com/gpu": "1", "cpu": "23", "memory": "200Gi"},
    })  # fmt: skip


def test_preferred_nodes_come_first_and_the_pods_prefer_them(
    cluster: Cluster, byo_operator: OperatorThread
) -> None:
    for name in ("pref-a", "pref-b", "pref-c"):
        _ready_gpu_node(cluster, name, "prefs")
    manifest = workspace_manifest("prefs")
    manifest["resource"] = {"labelSelector": {"matchLabels": {"apps": "prefs"}},
                            "preferredNodes": ["pref-c", "elsewhere"]}  # fmt: skip
    create(cluster, manifest)
    wait_for(lambda: "Deployment/prefs" in children(cluster, "prefs"), what="the Deployment")
    workers = wait_for(lambda: ((cluster.workspace("prefs") or {}).get("status") or {}).get("workerNodes"))
    assert workers == ["pref-c", "pref-a", "pref-b"]
    resource = cluster.condition("prefs", "ResourceReady") or {}
    assert "resource.preferredNodes elsewhere ignored" in resource["message"]
    affinity = children(cluster, "prefs")["Deployment/prefs"]["spec"]["template"]["spec"]["affinity"][
        "nodeAffinity"
    ]
    (term,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["preference"]["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pref-c", "elsewhere"]}
    ]


def test_brought_nodes_that_disagree_on_gpus_are_refused_by_name(
    cluster: Cluster, byo_operator: OperatorThread
) -> None:
    _ready_gpu_node(cluster, "mixed-a100", "mixed")
    _ready_gpu_node(cluster, "mixed-t4", "mixed", product="Tesla-T4")
    manifest = workspace_manifest("mixed")
    del manifest["resource"]["instanceType"]
    create(cluster, manifest)
    cond = wait_for(
        lambda: (c := cluster.condition("mixed", "ResourceReady")) and c["reason"] == "PlanFailed" and c
    )
    assert "do not have uniform GPUs" in cond["message"] and "mixed-t4" in cond["message"]
