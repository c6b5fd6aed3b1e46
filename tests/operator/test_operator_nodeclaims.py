"""The operator's NodeClaim modes (``--provisioner gpu-provisioner`` and ``karpenter``) against the
emulator with Karpenter's own NodeClaim CRD, a fake of Karpenter's lifecycle controller playing the
node-provisioner's part, and the test playing the kubelet."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from kaito_testing.apiserver import ApiServer
from kaito_testing.karpenter import FakeKarpenter, Offering, load_nodeclaim_crds
from kubernetes import client, config
from operator_support import PRESET, SKU, Cluster, wait_for, workspace_manifest
from test_operator_scenarios import children, create

from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.run import MissingCRD, OperatorThread
from kaito_core.planning.nodeclaims import INSTANCE_TYPES_UNAVAILABLE
from kaito_core.plugins import Registry

pytestmark = pytest.mark.timeout(120)
NC = ("karpenter.sh/v1", "NodeClaim")


@pytest.fixture(scope="module", params=["gpu-provisioner", "karpenter"])
def mode(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[tuple[str, FakeKarpenter]]:
    load_nodeclaim_crds(cluster.server)
    karpenter = FakeKarpenter(cluster.server, {SKU.name: Offering(gpus=1)}).start()
    thread = OperatorThread(cluster.config(provisioner=request.param), cluster.registry).start()
    yield request.param, karpenter
    thread.stop()
    karpenter.stop()


def claims(cluster: Cluster, workspace: str) -> list[dict[str, Any]]:
    return cluster.server.list(*NC, selector=f"kaito.sh/workspace={workspace}")


def test_a_workspace_gets_one_nodeclaim_written_as_kaito_writes_it_and_serves_once_it_is_ready(
    cluster: Cluster, mode: tuple[str, FakeKarpenter]
) -> None:
    name = f"claimed-{mode[0]}"
    create(cluster, workspace_manifest(name))
    (claim,) = wait_for(lambda: claims(cluster, name), what="a NodeClaim")
    meta, spec = claim["metadata"], claim["spec"]
    assert re.fullmatch(r"ws[0-9a-f]{9}", meta["name"])
    assert "namespace" not in meta  # Karpenter's NodeClaim is cluster-scoped
    assert {k: meta["labels"][k] for k in ("karpenter.sh/nodepool", "kaito.sh/workspace", "apps")} == {
        "karpenter.sh/nodepool": "kaito",
        "kaito.sh/workspace": name,
        "apps": name,
    }
    assert meta["labels"]["kaito.sh/workspacenamespace"] == "default"
    assert meta["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert spec["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert spec["nodeClassRef"] == {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}
    assert {(r["key"], r["operator"], tuple(r["values"])) for r in spec["requirements"]} == {
        ("karpenter.sh/nodepool", "In", ("kaito",)),
        ("node.kubernetes.io/instance-type", "In", (SKU.name,)),
        ("kubernetes.io/os", "In", ("linux",)),
        ("karpenter.azure.com/sku-name", "In", (SKU.name,)),
    }
    assert spec["resources"] == {"requests": {"storage": f"{PRESET.requirements.disk >> 30}Gi"}}

    # Launched and Registered are not enough: the Workspace waits for the node and its GPUs.
    wait_for(lambda: cluster.server.list("v1", "Node", selector=f"kaito.sh/workspace={name}"), what="a node")
    wait_for(lambda: (claims(cluster, name)[0].get("status") or {}).get("nodeName"), what="registration")
    resource = cluster.condition(name, "ResourceReady")
    assert resource is not None and resource["status"] == "False"
    assert f"Deployment/{name}" not in children(cluster, name)
    cluster.kubelet.nodes_ready(name)
    wait_for(lambda: f"Deployment/{name}" in children(cluster, name), what="the Deployment")
    conditions = {c["type"]: c["status"] for c in claims(cluster, name)[0]["status"]["conditions"]}
    assert conditions == {"Launched": "True", "Registered": "True", "Initialized": "True", "Ready": "True"}
    assert len(claims(cluster, name)) == 1
    workers = wait_for(lambda: ((cluster.workspace(name) or {}).get("status") or {}).get("workerNodes"))
    assert workers == [claim["metadata"]["name"]]


def test_a_failed_launch_reaches_the_workspace_status_as_it_is(
    cluster: Cluster, mode: tuple[str, FakeKarpenter]
) -> None:
    name = f"nocapacity-{mode[0]}"
    message = (
        "creating instance, insufficient regional vcpu quota left for family NCADSA100v4; "
        f"{INSTANCE_TYPES_UNAVAILABLE}"
    )
    mode[1].launch_errors[name] = message
    create(cluster, workspace_manifest(name))
    cond = wait_for(
        lambda: (c := cluster.condition(name, "ResourceReady")) and c["reason"] == "LaunchFailed" and c,
        what="the launch failure",
    )
    assert cond["message"] == message
    assert len(claims(cluster, name)) == 1  # waiting on the claim, not piling up more


def test_delete_removes_the_nodeclaims_before_the_finalizer(
    cluster: Cluster, mode: tuple[str, FakeKarpenter]
) -> None:
    name = f"gone-{mode[0]}"
    create(cluster, workspace_manifest(name))
    wait_for(lambda: cluster.server.list("v1", "Node", selector=f"kaito.sh/workspace={name}"), what="a node")
    cluster.server.delete("kaito.sh/v1beta1", "Workspace", name, "default")
    wait_for(lambda: cluster.workspace(name) is None, what="the Workspace to go")
    wait_for(lambda: not claims(cluster, name), what="the NodeClaim to go")
    wait_for(
        lambda: not cluster.server.list("v1", "Node", selector=f"kaito.sh/workspace={name}"),
        what="the node to go",
    )
    deletes = [c for c in cluster.operator_writes() if c.resource == "nodeclaims" and c.verb == "delete"]
    assert deletes


@pytest.mark.parametrize(
    ("provisioner", "node_classes", "missing"),
    [("gpu-provisioner", False, "NodeClaim"), ("karpenter", False, "KaitoNodeClass")],
)
def test_missing_crds_stop_the_operator_at_start_with_what_to_install(
    provisioner: str, node_classes: bool, missing: str, tmp_path: Any
) -> None:
    with ApiServer() as server:
        if missing != "NodeClaim":
            load_nodeclaim_crds(server, node_classes=node_classes)
        kubeconfig = str(server.kubeconfig("operator", tmp_path / "kubeconfig"))
        thread = OperatorThread(OperatorConfig(provisioner=provisioner, kubeconfig=kubeconfig), Registry())
        with pytest.raises(MissingCRD, match=f"does not serve {missing}") as caught:
            thread.start()
        assert "install" in str(caught.value)


def test_the_nodeclaim_crd_is_karpenters_own(cluster: Cluster) -> None:
    """The emulator serves what Karpenter's CRD says: cluster-scoped, the status subresource, the
    schema (a claim without nodeClassRef is refused as kube-apiserver refuses it)."""
    load_nodeclaim_crds(cluster.server)
    api = client.CustomObjectsApi(config.new_client_from_config(str(cluster.server.kubeconfig("tester"))))
    bad = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "wsbad"},
           "spec": {"requirements": []}}  # fmt: skip
    with pytest.raises(client.ApiException) as caught:
        api.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", bad)
    assert caught.value.status == 422 and "nodeClassRef" in str(caught.value.body)


def test_a_claim_karpenter_deletes_for_lack_of_capacity_is_replaced_under_a_new_name(
    cluster: Cluster, mode: tuple[str, FakeKarpenter]
) -> None:
    name = f"ice-{mode[0]}"
    karpenter = mode[1]
    karpenter.insufficient_capacity.add(name)
    create(cluster, workspace_manifest(name))

    def replaced() -> set[str]:
        gone = {c for c, what in karpenter.events if what.startswith("insufficient capacity")}
        owned = {c["metadata"]["name"] for c in claims(cluster, name)}
        return gone if len(gone) >= 2 and owned - gone else set()

    wait_for(replaced, what="a deleted claim replaced by one with another name")
    karpenter.insufficient_capacity.discard(name)
    wait_for(lambda: cluster.server.list("v1", "Node", selector=f"kaito.sh/workspace={name}"), what="a node")
    assert len([c for c in claims(cluster, name) if not c["metadata"].get("deletionTimestamp")]) == 1
