"""`kaito operator`'s node-provisioning flags: a bad --node-class and a cluster without Karpenter's CRD
are refused with what to do, before anything runs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from kaito_testing.apiserver import ApiServer

from kaito_core.cli.operator_cmd import operator_command, parse_node_class
from kaito_core.planning.nodeclaims import NodeClass


def test_node_class_is_kind_group_version_name() -> None:
    assert parse_node_class("AKSNodeClass.karpenter.azure.com/v1beta1/default") == NodeClass(
        group="karpenter.azure.com", kind="AKSNodeClass", version="v1beta1", name="default"
    )
    result = CliRunner().invoke(
        operator_command, ["--provisioner", "karpenter", "--node-class", "EC2NodeClass"]
    )
    assert (
        result.exit_code != 0
        and "--node-class: 'EC2NodeClass' is not KIND.GROUP/VERSION/NAME" in result.output
    )


def test_a_cluster_without_the_nodeclaim_crd_is_refused_at_start(tmp_path: Path) -> None:
    with ApiServer() as server:
        kubeconfig = server.kubeconfig("operator", tmp_path / "kubeconfig")
        result = CliRunner().invoke(
            operator_command, ["--provisioner", "gpu-provisioner", "--kubeconfig", str(kubeconfig)]
        )
    assert result.exit_code != 0
    assert "does not serve NodeClaim (nodeclaims.karpenter.sh/v1)" in result.output
    assert "install Karpenter's CRDs" in result.output


def test_an_unknown_provisioner_names_the_modes(tmp_path: Path) -> None:
    result = CliRunner().invoke(operator_command, ["--provisioner", "nonesuch"])
    assert result.exit_code != 0 and "gpu-provisioner, karpenter or byo" in result.output
