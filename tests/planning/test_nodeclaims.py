"""The NodeClaims KAITO writes (pure): names, labels, requirements by cloud, storage, and how a set of
claims is read (KAITO's FirstNodeClaimProvisioningState and IsNodeClaimReadyNotDeleting)."""

from __future__ import annotations

import re
from typing import Any

from kaito_core.api import Workspace
from kaito_core.planning.nodeclaims import (
    CLOUD_NODE_CLASSES,
    claim_ready,
    creation_stamp,
    first_provisioning_state,
    launch_unavailable,
    nodeclaim_manifest,
    nodeclaim_name,
    storage_request,
)
from kaito_core.plugins import GiB


def workspace(**annotations: str) -> Workspace:
    return Workspace.model_validate({
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "phi", "namespace": "team", "annotations": annotations},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4",
                     "labelSelector": {"matchLabels": {"apps": "phi", "kaito.sh/workspace": "someone-else"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    })  # fmt: skip


def manifest(cloud: str = "azure", **annotations: str) -> dict[str, Any]:
    return nodeclaim_manifest(
        workspace(**annotations), name="ws0123456789"[:11], instance_type="Standard_NC24ads_A100_v4",
        disk_bytes=80 * GiB, node_class=CLOUD_NODE_CLASSES[cloud], cloud=cloud,
    )  # fmt: skip


def test_the_creation_stamp_is_kaitos_time_layout_in_utc() -> None:
    assert creation_stamp(1_764_700_000_123_456_789) == "2025-12-02 18:26:40.123456789"
    assert creation_stamp(5) == "1970-01-01 00:00:00.000000005"


def test_names_are_ws_and_nine_hex_and_differ_by_time() -> None:
    first, second = (
        nodeclaim_name("team", "phi", "2026-12-02 10:00:00.000000001"),
        nodeclaim_name("team", "phi", "2026-12-02 10:00:00.000000002"),
    )
    assert re.fullmatch(r"ws[0-9a-f]{9}", first) and first != second


def test_reserved_selector_labels_cannot_point_a_claim_at_another_workspace() -> None:
    labels = manifest()["metadata"]["labels"]
    assert labels == {"apps": "phi", "karpenter.sh/nodepool": "kaito", "kaito.sh/workspace": "phi",
                      "kaito.sh/workspacenamespace": "team"}  # fmt: skip


def test_requirements_by_cloud_and_node_class() -> None:
    azure, aws = manifest("azure")["spec"], manifest("aws")["spec"]
    assert azure["requirements"][-1] == {"key": "karpenter.azure.com/sku-name", "operator": "In",
                                         "values": ["Standard_NC24ads_A100_v4"]}  # fmt: skip
    assert aws["requirements"][-1] == {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt",
                                       "values": ["0"]}  # fmt: skip
    assert aws["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}


def test_storage_and_image_family() -> None:
    assert storage_request(80 * GiB) == "80Gi" and storage_request(80 * GiB + 1) == "81Gi"
    assert storage_request(0) == "1024Gi"
    assert manifest()["metadata"]["annotations"]["kaito.sh/node-image-family"] == "ubuntu"
    family = manifest(**{"kaito.sh/node-image-family": "AzureLinux"})["metadata"]["annotations"]
    assert family["kaito.sh/node-image-family"] == "azurelinux"


def claim(*conditions: tuple[str, str, str, str], deleting: bool = False, node: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "wsabc"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    listed = [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]
    return {"metadata": meta, "status": {"nodeName": node, "conditions": listed}}


def test_the_earliest_real_error_wins_over_awaiting_and_later_stages() -> None:
    waiting = claim(("Launched", "Unknown", "AwaitingReconciliation", "object is awaiting reconciliation"))
    registered = claim(
        ("Launched", "True", "Launched", ""), ("Registered", "Unknown", "NodeNotFound", "no node")
    )
    failed = claim(("Launched", "Unknown", "QuotaExceeded", "quota"))
    assert first_provisioning_state([waiting, registered, failed]) == ("QuotaExceeded", "quota")
    assert first_provisioning_state([waiting, registered]) == ("NodeNotFound", "no node")
    assert first_provisioning_state([waiting]) == (
        "AwaitingReconciliation",
        "object is awaiting reconciliation",
    )
    assert first_provisioning_state([claim(("Launched", "Unknown", "X", "gone"), deleting=True)]) is None


def test_ready_claims_and_the_terminal_launch_failure() -> None:
    assert claim_ready(claim(("Ready", "True", "Ready", "")))
    assert not claim_ready(claim(("Ready", "True", "Ready", ""), deleting=True))
    assert claim_ready(claim(node="aks-node-1"))  # no Ready condition: a node name will do
    unavailable = claim(("Launched", "False", "LaunchFailed",
                         "all requested instance types were unavailable during launch"))  # fmt: skip
    assert launch_unavailable(unavailable)


def test_claims_keep_the_cel_rules_of_karpenters_crd() -> None:
    """The API emulator validates the openAPIV3Schema but evaluates no CEL; these are the CRD's
    ``x-kubernetes-validations`` on requirements, checked here by hand for what kaito writes."""
    from pathlib import Path

    import kaito_testing

    crd = (Path(kaito_testing.__file__).parent / "crds" / "karpenter.sh_nodeclaims.yaml").read_text()
    rules = {
        'self in ["karpenter.sh/capacity-type", "karpenter.sh/nodepool"] || '
        '!self.find("^([^/]+)").endsWith("karpenter.sh")',
        'self != "kubernetes.io/hostname"',
        "'self.all(x, x.operator == ''In'' ? x.values.size() != 0 : true)'",
    }
    assert all(rule in crd for rule in rules)
    for cloud in ("azure", "aws"):
        for req in manifest(cloud)["spec"]["requirements"]:
            key = req["key"]
            assert key in ("karpenter.sh/capacity-type", "karpenter.sh/nodepool") or not key.split("/")[
                0
            ].endswith("karpenter.sh")
            assert key != "kubernetes.io/hostname"
            if req["operator"] == "In":
                assert req["values"]
            if req["operator"] in ("Gt", "Lt"):
                assert len(req["values"]) == 1 and int(req["values"][0]) >= 0
