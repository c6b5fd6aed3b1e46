"""The operator killed (SIGKILL) in the middle of a reconciliation converges when restarted, with no
duplicate children and no rewrite of what it had already written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaito_testing.apiserver import Fault
from operator_support import OPERATOR_USER, Cluster, wait_for, workspace_manifest
from test_operator_scenarios import children, create, served

pytestmark = pytest.mark.timeout(120)
SCRIPT = Path(__file__).parent / "run_test_operator.py"


@pytest.fixture
def spawn(cluster: Cluster) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                str(cluster.server.kubeconfig(OPERATOR_USER)),
                str(cluster.server.kubeconfig("provisioner")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_killed_mid_reconcile_then_restarted_converges(cluster: Cluster, spawn: object) -> None:
    # The Service create keeps failing, so the first operator is stuck half-way through the children.
    cluster.server.inject(
        Fault(verb="create", resource="services", code=500, times=10_000, user=OPERATOR_USER)
    )
    first = spawn()  # type: ignore[operator]
    create(cluster, workspace_manifest("crash"))
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=crash"), what="a node")
    cluster.kubelet.nodes_ready("crash")
    wait_for(lambda: "Deployment/crash" in children(cluster, "crash"), what="the Deployment")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = children(cluster, "crash")
    assert "Service/crash" not in before
    cluster.server.call(cluster.server.emulator.faults.clear)
    # Leftovers of an older revision (owned by the Workspace, no longer desired) are pruned on restart.
    owner = before["Deployment/crash"]["metadata"]["ownerReferences"]
    stale_meta = {
        "name": "crash-stale",
        "namespace": "default",
        "labels": {"kaito.sh/workspace": "crash"},
        "ownerReferences": owner,
    }
    pod = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    for stale in (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": stale_meta},
        {"apiVersion": "v1", "kind": "Service", "metadata": stale_meta, "spec": {"ports": [{"port": 80}]}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": stale_meta,
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": pod},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": stale_meta,
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "x", "template": pod},
        },
    ):
        cluster.server.apply(stale)

    second = spawn()  # type: ignore[operator]
    wait_for(lambda: "Service/crash" in children(cluster, "crash"), what="the Service after the restart")
    cluster.kubelet.deployment_ready("default", "crash")
    wait_for(
        lambda: (cluster.condition("crash", "WorkspaceSucceeded") or {}).get("status") == "True",
        what="WorkspaceSucceeded after the restart",
    )
    wait_for(
        lambda: not any(k.endswith("/crash-stale") for k in children(cluster, "crash")),
        what="the stale children to be pruned",
    )
    after = children(cluster, "crash")
    assert set(after) == {"ConfigMap/crash-inference-config", "Deployment/crash", "Service/crash"}
    for key in ("ConfigMap/crash-inference-config", "Deployment/crash"):
        assert after[key]["metadata"]["uid"] == before[key]["metadata"]["uid"]  # not recreated
    assert after["Deployment/crash"]["spec"] == before["Deployment/crash"]["spec"]  # not rewritten
    assert len(cluster.server.list("v1", "Node", selector="kaito.sh/workspace=crash")) == 1
    assert second.poll() is None


def test_restart_of_a_settled_operator_writes_nothing(cluster: Cluster, spawn: object) -> None:
    """A resync of an unchanged Workspace (here: a fresh operator process) reads, and writes nothing."""
    first = spawn()  # type: ignore[operator]
    served(cluster, "settled")
    first.send_signal(signal.SIGTERM)
    first.wait(30)
    writes = len(cluster.operator_writes())
    calls = len(cluster.server.emulator.calls_by(OPERATOR_USER))
    spawn()  # type: ignore[operator]
    wait_for(
        lambda: any(
            c.resource == "services" and c.verb == "get" and c.name == "settled"
            for c in cluster.server.emulator.calls_by(OPERATOR_USER)[calls:]
        ),
        what="the restarted operator to check the children",
    )
    time.sleep(1.0)  # let the pass finish its status comparison
    assert cluster.operator_writes()[writes:] == []
