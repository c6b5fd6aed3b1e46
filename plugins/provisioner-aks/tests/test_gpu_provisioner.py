"""``kaito gpu-provisioner`` (kopf, for real) against the API emulator with Karpenter's NodeClaim CRD and
the ARM emulator through the real ContainerServiceClient; the test plays AKS's node bootstrap and the
kubelet. The last test runs the kaito operator in ``--provisioner gpu-provisioner`` mode alongside, so
an Azure quota error travels ARM -> NodeClaim -> Workspace status."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kaito_provisioner_aks.claims import ClaimReconciler
from kaito_provisioner_aks.gpu_provisioner import ProvisionerThread
from kaito_provisioner_aks.plugin import kaito_register_provisioners
from kaito_testing.aksnodes import AKSNodes
from kaito_testing.apiserver import ApiServer
from kaito_testing.arm import FakeARM
from kaito_testing.karpenter import load_nodeclaim_crds
from kubernetes import config

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")
NC = ("karpenter.sh/v1", "NodeClaim")
SKU = "Standard_NC24ads_A100_v4"
USER = "gpu-provisioner"
RECORD_CALLS_ENV = "KAITO_TEST_RECORD_GPU_PROVISIONER_CALLS"


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def cluster(arm: FakeARM) -> Iterator[tuple[ApiServer, FakeARM, AKSNodes]]:
    server = ApiServer(bookmark_interval=1.0).start()
    load_nodeclaim_crds(server)
    api = config.new_client_from_config(str(server.kubeconfig(USER)))
    reconciler = ClaimReconciler(
        api, subscription_id=arm.subscription_id, resource_group=arm.resource_group,
        cluster_name=arm.cluster_name, credential=arm.credential, base_url=arm.base_url,
        client_options=arm.client_kwargs(), environ={}, soon=0.1, retry=0.5,
    )  # fmt: skip
    thread = ProvisionerThread(api, reconciler).start()
    yield server, arm, AKSNodes(arm, server)
    thread.stop()
    record = os.environ.get(RECORD_CALLS_ENV)
    if record:  # test_gpu_provisioner_rbac.py's run of this module: add this test's calls to its file
        path = Path(record)
        calls = json.loads(path.read_text()) if path.exists() else []
        calls += [[c.group, c.resource, c.verb] for c in server.emulator.calls_by(USER)]
        path.write_text(json.dumps(calls))
    server.stop()


def claim(name: str, workspace: str = "phi", storage: str = "80Gi") -> dict[str, Any]:
    """A NodeClaim as the kaito operator writes it (tests/operator checks that side)."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {"karpenter.sh/nodepool": "kaito", "kaito.sh/workspace": workspace,
                       "kaito.sh/workspacenamespace": "default", "apps": workspace},
            "annotations": {"karpenter.sh/do-not-disrupt": "true", "kaito.sh/node-image-family": "ubuntu"},
        },
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [SKU]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                {"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [SKU]},
            ],
            "resources": {"requests": {"storage": storage}},
        },
    }  # fmt: skip


def condition(server: ApiServer, name: str, type_: str) -> dict[str, Any] | None:
    obj = server.get(*NC, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def node_ready(server: ApiServer, name: str) -> None:
    server.patch_status("v1", "Node", name, "", {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "capacity": {"nvidia.com/gpu": "1", "cpu": "24"}, "allocatable": {"nvidia.com/gpu": "1", "cpu": "23"},
    })  # fmt: skip


def test_a_nodeclaim_becomes_one_agent_pool_of_one_vm_then_a_ready_node_then_goes(
    cluster: tuple[ApiServer, FakeARM, AKSNodes],
) -> None:
    server, arm, aks = cluster
    server.apply(claim("ws0a1b2c3d4"))
    wait_for(lambda: arm.pool("ws0a1b2c3d4"), what="the agent pool")
    (put,) = [b for m, p, b in arm.bodies if m == "PUT" and p.endswith("/agentPools/ws0a1b2c3d4")]
    props = put["properties"]
    assert (props["vmSize"], props["count"], props["osDiskSizeGB"], props["osSKU"]) == (SKU, 1, 80, "Ubuntu")
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"] and props["osType"] == "Linux"
    assert props["nodeLabels"]["kaito.sh/workspace"] == "phi"
    assert props["nodeLabels"]["karpenter.sh/nodepool"] == "kaito"
    assert props["nodeLabels"]["kaito.sh/machine-type"] == "gpu"
    claimed = server.get(*NC, "ws0a1b2c3d4") or {}
    assert "karpenter.sh/termination" in claimed["metadata"]["finalizers"]

    arm.finish_operations()
    (node,) = wait_for(aks.join, what="the VM to join")
    launched = wait_for(lambda: (c := condition(server, "ws0a1b2c3d4", "Launched")) and c["status"] == "True")
    assert launched
    status = (server.get(*NC, "ws0a1b2c3d4") or {})["status"]
    assert status["providerID"].startswith("azure:///subscriptions/")
    wait_for(
        lambda: (server.get(*NC, "ws0a1b2c3d4") or {})["status"].get("nodeName") == node, what="nodeName"
    )
    labels = (server.get("v1", "Node", node) or {})["metadata"]["labels"]
    assert labels["karpenter.sh/registered"] == "true" and labels["apps"] == "phi"
    assert (condition(server, "ws0a1b2c3d4", "Ready") or {}).get("status") != "True"
    node_ready(server, node)
    wait_for(lambda: (condition(server, "ws0a1b2c3d4", "Ready") or {}).get("status") == "True", what="Ready")

    server.delete(*NC, "ws0a1b2c3d4")
    wait_for(lambda: arm.pool("ws0a1b2c3d4") is None or arm.finish_operations(), what="the pool deleted")
    wait_for(lambda: server.get(*NC, "ws0a1b2c3d4") is None, what="the NodeClaim to go")
    assert server.get("v1", "Node", node) is None


def test_a_quota_failure_is_the_nodeclaims_launched_message_as_azure_wrote_it(
    cluster: tuple[ApiServer, FakeARM, AKSNodes],
) -> None:
    server, arm, _ = cluster
    arm.quota["StandardNCADSA100v4Family"] = 0
    server.apply(claim("ws5e6f7a8b9"))
    cond = wait_for(
        lambda: (
            (c := condition(server, "ws5e6f7a8b9", "Launched"))
            and c["reason"] != "AwaitingReconciliation"
            and c
        )
    )
    assert (cond["status"], cond["reason"]) == ("Unknown", "QuotaExceeded")
    assert cond["message"] == next(e["message"] for e in arm.errors if e["code"] == "QuotaExceeded")
    assert "exceeding approved StandardNCADSA100v4Family Cores quota" in cond["message"]
    arm.quota["StandardNCADSA100v4Family"] = 1000  # raised: the next try after the hold succeeds
    wait_for(lambda: arm.pool("ws5e6f7a8b9"), what="the retried create")


def test_a_claim_that_cannot_be_a_pool_says_why(cluster: tuple[ApiServer, FakeARM, AKSNodes]) -> None:
    server, arm, _ = cluster
    server.apply(claim("ws000000001", storage="0"))
    cond = wait_for(
        lambda: (c := condition(server, "ws000000001", "Launched")) and c["reason"] == "LaunchFailed" and c
    )
    assert cond["message"] == "storage request of nodeclaim(ws000000001) should be more than 0"
    assert arm.pool_names() == []


def test_quota_error_reaches_the_workspace_through_the_nodeclaim(
    cluster: tuple[ApiServer, FakeARM, AKSNodes], tmp_path: Any
) -> None:
    from kaito_core.operator.config import OperatorConfig
    from kaito_core.operator.run import OperatorThread
    from kaito_core.plugins import Registry

    server, arm, aks = cluster
    for doc in yaml.safe_load_all(
        (Path(__file__).resolve().parents[3] / "crds" / "kaito.sh_workspaces.yaml").read_text()
    ):
        if doc:
            server.apply(doc)
    arm.quota["StandardNCADSA100v4Family"] = 0

    class Plugin:
        kaito_register_provisioners = staticmethod(kaito_register_provisioners)

    registry = Registry()
    registry.register(Plugin(), distribution="kaito-provisioner-aks")
    kubeconfig = str(server.kubeconfig("operator", tmp_path / "kubeconfig"))
    operator = OperatorThread(
        OperatorConfig(provisioner="gpu-provisioner", kubeconfig=kubeconfig, requeue_seconds=0.2), registry
    ).start()
    try:
        server.apply({
            "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": "custom", "namespace": "default"},
            "resource": {"instanceType": SKU, "labelSelector": {"matchLabels": {"apps": "custom"}}},
            "inference": {"template": {"spec": {"containers": [{"name": "c", "image": "example.com/x:1"}]}}},
        })  # fmt: skip

        def resource_ready() -> dict[str, Any] | None:
            ws = server.get("kaito.sh/v1beta1", "Workspace", "custom", "default") or {}
            conds = (ws.get("status") or {}).get("conditions") or []
            found = next((c for c in conds if c["type"] == "ResourceReady"), None)
            return found if found and found["reason"] == "QuotaExceeded" else None

        cond = wait_for(resource_ready, what="the quota error in the Workspace")
        assert "exceeding approved StandardNCADSA100v4Family Cores quota" in cond["message"]
        (nodeclaim,) = server.list(*NC, selector="kaito.sh/workspace=custom")
        name = nodeclaim["metadata"]["name"]
        launched = condition(server, name, "Launched") or {}
        assert cond["message"] == launched["message"]

        # The quota is raised: the same claim becomes a pool, a node, a ready Workspace.
        arm.quota["StandardNCADSA100v4Family"] = 1000
        wait_for(lambda: arm.pool(name), what="the pool after the quota increase")
        arm.finish_operations()
        (node,) = wait_for(aks.join, what="the VM to join")
        wait_for(
            lambda: (server.get(*NC, name) or {}).get("status", {}).get("nodeName") == node, what="registered"
        )
        node_ready(server, node)

        def workspace_ready() -> bool:
            ws = server.get("kaito.sh/v1beta1", "Workspace", "custom", "default") or {}
            conds = (ws.get("status") or {}).get("conditions") or []
            return any(c["type"] == "ResourceReady" and c["status"] == "True" for c in conds)

        wait_for(workspace_ready, what="ResourceReady")
        assert server.get("apps/v1", "Deployment", "custom", "default") is not None

        # Deleted: the claim goes (the operator), then the node and the pool (this controller).
        server.delete("kaito.sh/v1beta1", "Workspace", "custom", "default")
        wait_for(
            lambda: server.get("kaito.sh/v1beta1", "Workspace", "custom", "default") is None, what="gone"
        )
        wait_for(lambda: arm.pool(name) is None or arm.finish_operations(), what="the pool deleted")
        wait_for(lambda: server.get(*NC, name) is None, what="the NodeClaim to go")
        assert server.get("v1", "Node", node) is None
    finally:
        operator.stop()
