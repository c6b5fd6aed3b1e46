"""`kaito crd`, `kaito validate`, `kaito convert`: through click's CliRunner and the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import kaito_core.plugins
from kaito_core.cli.main import cli
from kaito_core.plugins import (
    Architecture,
    GiB,
    InstanceType,
    ModelSource,
    NodeRequest,
    Preset,
    ProvisionResult,
    Registry,
    Requirements,
    TuningSupport,
    hookimpl,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))
#: the seed examples, whose presets the test registry below knows
SEED_EXAMPLES = [
    p for p in EXAMPLES if Path(p).name.startswith(("workspace-phi-3", "workspace-tuning-phi-3"))
]

MISTAKES = """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: Bad_Name
resource:
  instanceType: Standard_NC6s_v3
  labelSelector:
    matchLabels: {apps: x}
inference:
  preset:
    name: phi-3-mini-4k-instruct
  template: {spec: {containers: []}}
  adapters:
    - source: {name: a, image: "r/a:1"}
      strength: "7"
---
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata:
  name: second
resource:
  count: lots
  labelSelector: {matchLabels: {apps: y}}
"""


def preset(name: str, gpu_memory: int = 9 * GiB) -> Preset:
    return Preset(
        name=name,
        family="phi3",
        source=ModelSource(repo=f"microsoft/{name}", revision="0" * 40),
        formats=(),
        architecture=Architecture(
            parameters=3_800_000_000,
            layers=32,
            attention_heads=32,
            kv_heads=32,
            head_dim=96,
            context_length=4096,
        ),
        requirements=Requirements(gpu_count=1, total_gpu_memory=gpu_memory, per_gpu_memory=0, disk=80 * GiB),
        runtimes=("vllm",),
        default_runtime="vllm",
        license="MIT",
        tuning=TuningSupport(),
    )


class Cloud:
    name = "cloud"

    def catalog(self) -> Mapping[str, InstanceType]:
        return {"Standard_NC6s_v3": InstanceType("Standard_NC6s_v3", "NVIDIA V100", 1, 16 * GiB)}

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        return ProvisionResult(pending=request.count)

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        return None


class Plugin:
    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        register(preset("phi-3-mini-4k-instruct"))
        register(preset("phi-3-mini-128k-instruct"))
        register(preset("phi-3-medium-4k-instruct", 28 * GiB))

    @hookimpl
    def kaito_register_provisioners(self, register: Callable[[Any], None]) -> None:
        register(Cloud())


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    registry = Registry()
    registry.register(Plugin(), distribution="test-plugins")
    monkeypatch.setattr(kaito_core.plugins, "default_registry", lambda: registry)
    return CliRunner()


def test_crd_prints_the_checked_in_file(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["crd"])
    assert result.exit_code == 0
    assert result.stdout == (ROOT / "crds" / "kaito.sh_workspaces.yaml").read_text()


def test_seed_examples_are_valid(runner: CliRunner) -> None:
    assert len(SEED_EXAMPLES) == 3
    result = runner.invoke(cli, ["validate", "--provisioner", "cloud", *SEED_EXAMPLES])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "valid\n", "")


def test_every_mistake_is_listed_with_file_object_and_path(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MISTAKES)
    result = runner.invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}: Workspace/Bad_Name: metadata.name: 'Bad_Name': a lowercase RFC 1123 label must consist "
        "of lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
        "character (e.g. 'my-name', or '123-abc')",
        f"{bad}: Workspace/Bad_Name: inference: Preset and Template cannot be set at the same time",
        f"{bad}: Workspace/Bad_Name: inference.adapters: Runtime validation: vLLM does not support adapter "
        "strength",
        f"{bad}: Workspace/Bad_Name: inference.adapters[0].strength: Strength value for Adapter 'a' must be "
        "between 0 and 1",
        f"{bad}: Workspace/second: resource.count: Input should be a valid integer, unable to parse string "
        "as an integer (got 'lots')",
    ]


def test_provisioner_option_checks_the_catalog(runner: CliRunner, tmp_path: Path) -> None:
    ws = yaml.safe_load((ROOT / "examples" / "workspace-phi-3-mini.yaml").read_text())
    ws["resource"]["instanceType"] = "Standard_ND96isr_H100_v5"
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(ws))
    assert runner.invoke(cli, ["validate", str(path)]).exit_code == 0
    result = runner.invoke(cli, ["validate", "--provisioner", "cloud", str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}: Workspace/workspace-phi-3-mini: resource.instanceType: Unsupported instance type "
        "Standard_ND96isr_H100_v5. Supported SKUs: Standard_NC6s_v3\n"
    )
    result = runner.invoke(cli, ["validate", "--provisioner", "nope", str(path)])
    assert result.exit_code == 1 and "unknown provisioner 'nope' (known: cloud)" in result.stderr


def test_old_option_checks_updates(runner: CliRunner, tmp_path: Path) -> None:
    old = ROOT / "examples" / "workspace-phi-3-mini.yaml"
    ws = yaml.safe_load(old.read_text())
    ws["resource"]["count"] = 2
    ws["inference"]["preset"]["name"] = "phi-3-mini-128k-instruct"
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(ws))
    result = runner.invoke(cli, ["validate", "--old", str(old), str(new)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{new}: Workspace/workspace-phi-3-mini: resource.count: field is immutable",
        f"{new}: Workspace/workspace-phi-3-mini: inference.preset: field is immutable",
    ]
    ws["metadata"]["name"] = "renamed"
    new.write_text(yaml.safe_dump(ws))
    result = runner.invoke(cli, ["validate", "--old", str(old), str(new)])
    assert result.exit_code == 0
    assert result.stderr == (
        f"{new}: Workspace/renamed: metadata.name: warning: no Workspace default/renamed in {old}; "
        "update checks skipped\n"
    )


def test_warnings_do_not_fail(runner: CliRunner, tmp_path: Path) -> None:
    ws = yaml.safe_load((ROOT / "examples" / "workspace-phi-3-mini.yaml").read_text())
    ws["inference"]["preset"]["name"] = "phi-3-medium-4k-instruct"  # 28Gi on a 16Gi V100
    ws["metadata"]["annotations"] = {"kaito.sh/bypass-resource-checks": "True"}
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(ws))
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0 and result.stdout == "valid\n"
    assert "warning: Insufficient total GPU memory" in result.stderr


def test_unreadable_and_empty_files(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = runner.invoke(cli, ["validate", str(empty)])
    assert result.exit_code == 1 and result.stderr == f"{empty}: no Workspace found\n"
    result = runner.invoke(cli, ["validate", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_convert_round_trips(runner: CliRunner, tmp_path: Path) -> None:
    source = ROOT / "examples" / "workspace-phi-3-mini.yaml"
    result = runner.invoke(cli, ["convert", str(source), "--to", "v1alpha1"])
    assert result.exit_code == 0, result.stderr
    [alpha] = list(yaml.safe_load_all(result.stdout))
    assert alpha["apiVersion"] == "kaito.sh/v1alpha1"
    converted = tmp_path / "alpha.yaml"
    converted.write_text(result.stdout)
    back = runner.invoke(cli, ["convert", str(converted), "--to", "v1beta1"])
    assert yaml.safe_load(back.stdout) == yaml.safe_load(source.read_text())


def test_the_installed_console_script(tmp_path: Path) -> None:
    """The real `kaito` executable with the real installed plugins: every example is valid."""
    kaito = Path(sys.executable).with_name("kaito")
    if not kaito.exists():
        pytest.fail(f"the kaito console script is not installed next to {sys.executable}")
    bad = tmp_path / "bad.yaml"
    bad.write_text(MISTAKES)
    env = {**os.environ, "NO_COLOR": "1"}
    examples = subprocess.run(
        [str(kaito), "validate", *EXAMPLES], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert (examples.returncode, examples.stdout) == (0, "valid\n"), examples.stderr
    result = subprocess.run(
        [str(kaito), "validate", str(bad)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 1 and result.stdout == ""
    assert f"{bad}: Workspace/Bad_Name: inference: Preset and Template cannot be set at the same time" in (
        result.stderr.splitlines()
    )
    crd = subprocess.run([str(kaito), "crd"], capture_output=True, text=True, timeout=120, check=True)
    assert crd.stdout == (ROOT / "crds" / "kaito.sh_workspaces.yaml").read_text()


def test_validate_reads_stdin(runner: CliRunner) -> None:
    text = (ROOT / "examples" / "workspace-phi-3-mini.yaml").read_text()
    result = runner.invoke(cli, ["validate", "-"], input=text)
    assert (result.exit_code, result.stdout) == (0, "valid\n")
    result = runner.invoke(cli, ["validate", "-"], input=text.replace("phi-3-mini-4k", "phi-9"))
    assert result.exit_code == 1
    assert result.stderr.startswith("-: Workspace/workspace-phi-3-mini: inference.preset.name: Unsupported")


def test_nodes_option_checks_against_nodes_you_bring(runner: CliRunner, tmp_path: Path) -> None:
    ws = yaml.safe_load((ROOT / "examples" / "workspace-phi-3-mini.yaml").read_text())
    del ws["resource"]["instanceType"]
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(ws))
    labels = {"apps": "phi-3", "nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.count": "1"}
    node_list = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1", "labels": labels}},
    ]}
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_list))
    result = runner.invoke(cli, ["validate", "--nodes", str(nodes), str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}: Workspace/workspace-phi-3-mini: resource.labelSelector: Failed to get GPU config from "
        "nvidia labels on node gpu-1: missing required nvidia.com labels on node gpu-1\n"
    )
    labels["nvidia.com/gpu.memory"] = "15360"  # 15 GiB: enough for 9Gi
    nodes.write_text(yaml.safe_dump(node_list))
    result = runner.invoke(cli, ["validate", "--nodes", str(nodes), str(path)])
    assert (result.exit_code, result.stdout) == (0, "valid\n"), result.stderr
    labels["apps"] = "other"
    nodes.write_text(yaml.safe_dump(node_list))
    result = runner.invoke(cli, ["validate", "--nodes", str(nodes), str(path)])
    assert "No nodes found matching the specified label selector" in result.stderr
    ws["resource"]["instanceType"] = "Standard_NC6s_v3"
    path.write_text(yaml.safe_dump(ws))
    result = runner.invoke(cli, ["validate", "--nodes", str(nodes), str(path)])
    byo = "instanceType must be empty when node auto-provisioning is disabled (BYO scenario)"
    assert byo in result.stderr
    result = runner.invoke(cli, ["validate", "--nodes", str(nodes), "--provisioner", "cloud", str(path)])
    assert result.exit_code == 1 and "not both" in result.stderr
    nodes.write_text("kind: Pod\nmetadata: {name: p}\n")
    result = runner.invoke(cli, ["validate", "--nodes", str(nodes), str(path)])
    assert result.exit_code == 1 and "expected Node objects" in result.stderr
