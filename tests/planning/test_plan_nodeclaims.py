"""`kaito plan --nodeclaims`: the NodeClaims the operator would write, as a List Karpenter's own CRD
accepts (created in the API emulator, which applies the CRD's schema as kube-apiserver does)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from kaito_testing.apiserver import ApiServer
from kaito_testing.karpenter import load_nodeclaim_crds
from kubernetes import client, config

from kaito_core.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "workspace-phi-3-mini.yaml"


def plan_claims(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["plan", str(EXAMPLE), "--nodeclaims", *args])
    assert result.exit_code == 0, result.output
    listed = yaml.safe_load(result.output)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    return listed["items"]


def test_the_claims_are_what_the_operator_writes_and_karpenters_crd_accepts_them() -> None:
    [claim] = plan_claims()
    workspace = yaml.safe_load(EXAMPLE.read_text())
    assert claim["metadata"]["name"].startswith("ws") and len(claim["metadata"]["name"]) == 11
    labels = claim["metadata"]["labels"]
    assert labels["kaito.sh/workspace"] == workspace["metadata"]["name"]
    assert labels["karpenter.sh/nodepool"] == "kaito"
    requirements = {r["key"]: r["values"] for r in claim["spec"]["requirements"]}
    sku = workspace["resource"]["instanceType"]
    assert requirements["node.kubernetes.io/instance-type"] == [sku]
    assert requirements["karpenter.azure.com/sku-name"] == [sku]
    assert claim["spec"]["nodeClassRef"]["kind"] == "KaitoNodeClass"
    with ApiServer() as server:
        load_nodeclaim_crds(server)
        api = client.CustomObjectsApi(config.new_client_from_config(str(server.kubeconfig("admin"))))
        created = api.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", claim)
        assert created["spec"]["resources"] == claim["spec"]["resources"]


def test_aws_claims_carry_the_aws_node_class_and_gpu_requirement() -> None:
    claims = plan_claims("--cloud", "aws", "--instance-type", "Standard_NC6s_v3")
    assert len(claims) == 1
    [claim] = claims
    assert claim["spec"]["nodeClassRef"]["kind"] == "EC2NodeClass"
    assert {r["key"] for r in claim["spec"]["requirements"]} >= {"karpenter.k8s.aws/instance-gpu-count"}


def test_nodeclaims_need_an_instance_type_target(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", str(EXAMPLE), "--nodeclaims", "--local"])
    assert result.exit_code != 0 and "--nodeclaims plans new nodes" in result.output
