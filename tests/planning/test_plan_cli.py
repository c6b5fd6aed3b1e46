"""`kaito plan` and `kaito presets` against the installed plugins (the editable checkout's entry points)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kaito_core.cli.plan_cmd import plan_command
from kaito_core.cli.plugins_cmd import presets_command

WORKSPACE = """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: workspace-{name}
resource:
{resource}
  labelSelector:
    matchLabels:
      apps: {name}
inference:
  preset:
    name: {name}
"""


def write_workspace(tmp_path: Path, name: str, instance_type: str | None = "Standard_NC6s_v3") -> Path:
    resource = f"  instanceType: {instance_type}" if instance_type else ""
    path = tmp_path / f"{name}.yaml"
    path.write_text(WORKSPACE.format(name=name, resource=resource).replace("resource:\n\n", "resource:\n"))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(plan_command, list(args), catch_exceptions=False)


def test_phi3_mini_on_nc6s_v3_plans_vllm_on_one_v100(tmp_path: Path) -> None:
    path = write_workspace(tmp_path, "phi-3-mini-4k-instruct", instance_type=None)
    result = run(str(path), "--instance-type", "Standard_NC6s_v3", "-o", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert (plan["runtime"], plan["node_count"], plan["gpus_per_node"], plan["gpuCount"]) == ("vllm", 1, 1, 1)
    assert plan["instance_type"] == "Standard_NC6s_v3" and plan["resources"]["gpu"] == 1
    assert plan["memory"]["notes"][0] == "weights: 7.12Gi safetensors x 1.02 = 7.26Gi"


def test_table_shows_the_memory_arithmetic(tmp_path: Path) -> None:
    result = run(str(write_workspace(tmp_path, "phi-3-mini-4k-instruct")))
    assert result.exit_code == 0, result.output
    for text in ("runtime", "vllm", "memory", "usable per GPU: 16Gi x 0.84 = 13.44Gi", "GPUs needed: floor("):
        assert text in result.stdout


def test_medium_on_nc6s_v3_fails_with_kaitos_message_and_skus_that_fit(tmp_path: Path) -> None:
    result = run(str(write_workspace(tmp_path, "phi-3-medium-4k-instruct")))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "Insufficient total GPU memory: Instance type Standard_NC6s_v3 has a total of 16Gi, but preset "
        "phi-3-medium-4k-instruct requires at least 28Gi" in result.stderr
    )
    assert "Instance types that fit: " in result.stderr and "Standard_NC24ads_A100_v4" in result.stderr


def test_gemma_270m_local_plans_llamacpp_on_the_cpu(tmp_path: Path) -> None:
    result = run(str(write_workspace(tmp_path, "gemma-3-270m", instance_type=None)), "--local", "-o", "yaml")
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.stdout)
    assert (plan["runtime"], plan["quantization"]) == ("llamacpp", "Q4_K_M")
    if plan["gpus_per_node"] == 0:  # this machine has no NVIDIA GPU
        assert plan["n_gpu_layers"] == 0 and plan["threads"] >= 1
        assert plan["target"].startswith("this machine")


def test_nodes_file_from_kubectl(tmp_path: Path) -> None:
    node_list = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"gpu-{i}",
                    "labels": {
                        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                        "nvidia.com/gpu.count": "1",
                        "nvidia.com/gpu.memory": "81920",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "23", "memory": "200Gi", "nvidia.com/gpu": "1"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
            for i in range(2)
        ],
    }
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_list))
    result = run(
        str(write_workspace(tmp_path, "phi-3-medium-128k-instruct", None)),
        "--nodes",
        str(nodes),
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert (plan["runtime"], plan["context_length"], plan["node_count"]) == ("vllm", 131072, 1)

    del node_list["items"][1]["metadata"]["labels"]["nvidia.com/gpu.memory"]
    nodes.write_text(yaml.safe_dump(node_list))
    result = run(str(write_workspace(tmp_path, "phi-3-medium-128k-instruct", None)), "--nodes", str(nodes))
    assert result.exit_code == 1
    assert "node gpu-1 has GPUs but is missing the label(s) nvidia.com/gpu.memory" in result.stderr


def test_config_map_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "inference-config"},
                "data": {"inference_config.yaml": "vllm:\n  max-model-len: 100000\n"},
            }
        )
    )
    result = run(str(write_workspace(tmp_path, "phi-3-mini-4k-instruct")), "--config", str(config))
    assert result.exit_code == 1
    assert "max-model-len 100000 exceeds model's maximum supported context window 4096" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--instance-type", "Standard_Nope"), "Unsupported instance type Standard_Nope. Supported SKUs: "),
        (("--local", "--instance-type", "Standard_NC6s_v3"), "choose one target"),
    ],
)
def test_bad_targets(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run(str(write_workspace(tmp_path, "phi-3-mini-4k-instruct")), *args)
    assert result.exit_code == 1 and message in result.stderr


def test_no_instance_type_and_no_target(tmp_path: Path) -> None:
    result = run(str(write_workspace(tmp_path, "gemma-3-270m", instance_type=None)))
    assert result.exit_code == 1
    assert "no resource.instanceType: pass --instance-type, --nodes FILE or --local" in result.stderr


def test_presets_lists_phi3_and_gemma3_with_requirements() -> None:
    result = CliRunner().invoke(presets_command, ["-o", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    presets = {p["name"]: p for p in json.loads(result.stdout)}
    for name in (
        "phi-3-mini-4k-instruct",
        "phi-3-mini-128k-instruct",
        "phi-3-medium-4k-instruct",
        "phi-3-medium-128k-instruct",
        "phi-3.5-mini-instruct",
        "gemma-3-270m",
        "gemma-3-4b-instruct",
        "gemma-3-27b-instruct",
    ):
        assert name in presets
    assert presets["phi-3-medium-4k-instruct"]["totalGPUMemory"] == "28.0Gi"
    assert presets["phi-3-medium-4k-instruct"]["distribution"] == "kaito-presets-phi3"
    assert presets["gemma-3-270m"]["runtimes"] == ["llamacpp"] and presets["gemma-3-270m"]["gpuCount"] == 0
    table = CliRunner().invoke(presets_command, [], catch_exceptions=False)
    assert "phi-3-mini-4k-instruct" in table.stdout and "vllm*,llamacpp" in table.stdout
