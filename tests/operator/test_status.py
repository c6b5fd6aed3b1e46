"""Status decisions: failure classification as KAITO does it, readiness, and stable conditions."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_core.operator.status import Check, build_status, node_is_ready, pod_failure, workload_check


def pod(statuses: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "ws-abc"}, "status": {"containerStatuses": statuses or [], **status}}


@pytest.mark.parametrize(
    ("container", "reason"),
    [
        (
            {"name": "c", "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}},
            "ImagePullError",
        ),
        (
            {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}},
            "ContainerCrashLoopBackOff",
        ),
        (
            {
                "name": "c",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            },
            "ContainerOOMKilled",
        ),
    ],
)
def test_container_failures_are_classified(container: dict[str, Any], reason: str) -> None:
    check = pod_failure([pod([container])])
    assert check is not None and check.reason == reason and check.failed and "ws-abc" in check.message


def test_eviction_and_unschedulable() -> None:
    evicted = pod_failure([pod(reason="Evicted", message="low on memory")])
    assert evicted is not None and evicted.reason == "PodEvicted"
    pending = pod(
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ]
    )
    check = pod_failure([pending])
    assert check is not None and check.reason == "Unschedulable" and "Insufficient" in check.message
    assert pod_failure([pod([{"name": "c", "state": {"running": {}}}])]) is None


def test_nodes_need_gpu_capacity_when_gpus_are_planned() -> None:
    node = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "capacity": {}}}
    assert node_is_ready(node, need_gpu=False) and not node_is_ready(node, need_gpu=True)
    node["status"]["capacity"] = {"nvidia.com/gpu": "8"}
    assert node_is_ready(node, need_gpu=True)
    assert not node_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False)


def test_workload_ready_needs_the_observed_generation() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "w", "generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1},
    }
    assert not workload_check(deployment).ok
    deployment["status"]["observedGeneration"] = 2
    assert workload_check(deployment).ok


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    ok = Check("True", "NodesReady", "1 node(s) ready")
    first = build_status(None, generation=1, resource=ok, inference=Check("False", "WorkloadNotReady", "0/1"))
    assert first["state"] == "NotReady"
    again = build_status(
        first, generation=1, resource=ok, inference=Check("False", "WorkloadNotReady", "0/1")
    )
    assert again == first  # an unchanged Workspace produces an identical status: nothing to write
    failed = build_status(
        first,
        generation=1,
        resource=ok,
        inference=Check("False", "ImagePullError", "pull failed", failed=True),
    )
    assert failed["state"] == "Failed"
    succeeded = {c["type"]: c for c in failed["conditions"]}["WorkspaceSucceeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("False", "ImagePullError")
