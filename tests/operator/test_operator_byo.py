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
