"""Any Hugging Face model by repository id (KAITO's generic path): presets built from the config.json and
file listing the FakeHub serves through huggingface_hub, then validated and planned like catalog ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kaito_testing.hub import FakeHub
from kaito_testing.hub_models import SHAPES, tiny_safetensors

from kaito_core.artifacts.hub import HubClient
from kaito_core.artifacts.hub_presets import resolve_hub_preset
from kaito_core.cli.api_cmd import validate
from kaito_core.cli.plan_cmd import plan_command
from kaito_core.planning.hub_preset import HubModelError
from kaito_core.plugins import GiB, default_registry

from .conftest import TOKEN

WORKSPACE = """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: {wsname}
  annotations: {annotations}
resource:
  instanceType: {instance_type}
  labelSelector:
    matchLabels:
      apps: generic
inference:
  preset:
    name: {repo}
{options}"""


def workspace(tmp_path: Path, repo: str, instance_type: str = "Standard_NC24ads_A100_v4",
              annotations: dict[str, str] | None = None, secret: str | None = None) -> Path:
    options = f"    presetOptions:\n      modelAccessSecret: {secret}\n" if secret else ""
    path = tmp_path / "ws.yaml"
    path.write_text(WORKSPACE.format(wsname="generic", repo=repo, instance_type=instance_type,
                                     annotations=json.dumps(annotations or {}), options=options))
    return path


def plan(path: Path, *extra: str) -> Any:
    return CliRunner().invoke(plan_command, [str(path), "-o", "json", *extra], catch_exceptions=False)


@pytest.fixture
def runtimes() -> dict[str, Any]:
    return default_registry().runtimes()


@pytest.mark.parametrize("model_type", sorted(SHAPES))
def test_presets_from_real_architectures(model_type: str, hub: FakeHub, client: HubClient,
                                         runtimes: dict[str, Any]) -> None:
    shape = SHAPES[model_type]
    commit = shape.publish(hub)
    preset = resolve_hub_preset(shape.repo, runtimes, client=client)
    text = shape.config.get("text_config", shape.config)
    arch = preset.architecture
    assert preset.source.revision == commit
    assert (arch.layers, arch.attention_heads, arch.kv_heads, arch.context_length) == (
        text["num_hidden_layers"], text["num_attention_heads"], text["num_key_value_heads"],
        text["max_position_embeddings"])
    assert arch.head_dim == text.get("head_dim", text["hidden_size"] // text["num_attention_heads"])
    assert preset.runtimes == ("vllm",)
    assert [f.name for f in preset.formats[0].files] == list(shape.shards)
    assert preset.requirements.disk >= preset.formats[0].total_bytes + 80 * GiB


def test_quantized_models_let_vllm_choose_the_dtype(hub: FakeHub, client: HubClient,
                                                    runtimes: dict[str, Any]) -> None:
    SHAPES["gpt_oss"].publish(hub)
    preset = resolve_hub_preset("openai/gpt-oss-20b", runtimes, client=client)
    assert preset.formats[0].quantization == "mxfp4"
    assert preset.runtime_defaults["vllm"] == {"dtype": "auto"}


def test_an_architecture_no_runtime_serves(hub: FakeHub, client: HubClient, runtimes: dict[str, Any]) -> None:
    config = {"architectures": ["TotallyNewForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 2,
              "hidden_size": 64}
    hub.add_repo("org/new", {"config.json": json.dumps(config), "model.safetensors": tiny_safetensors()})
    with pytest.raises(HubModelError, match="architecture TotallyNewForCausalLM is not served by any"):
        resolve_hub_preset("org/new", runtimes, client=client)


def test_pickled_weights_only_are_refused(hub: FakeHub, client: HubClient, runtimes: dict[str, Any]) -> None:
    config = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 2,
              "hidden_size": 64}
    hub.add_repo("org/old", {"config.json": json.dumps(config), "pytorch_model.bin": b"\x80\x04"})
    with pytest.raises(HubModelError, match=r"only pickled weights \(pytorch_model.bin\)"):
        resolve_hub_preset("org/old", runtimes, client=client)


# ---------------------------------------------------------------------------------------------- CLI


def test_kaito_plan_sizes_a_generic_model(hub: FakeHub, hf_env: Path, tmp_path: Path) -> None:
    commit = SHAPES["qwen2"].publish(hub)
    result = plan(workspace(tmp_path, "Qwen/Qwen2.5-Coder-7B-Instruct"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["preset"] == "Qwen/Qwen2.5-Coder-7B-Instruct" and data["runtime"] == "vllm"
    assert data["gpuCount"] == 1 and data["context_length"] == 32768
    assert data["weightsBytes"] == sum(len(c) for p, c in SHAPES["qwen2"].files().items()
                                       if p.endswith(".safetensors"))
    valid = CliRunner().invoke(validate, [str(workspace(tmp_path, "Qwen/Qwen2.5-Coder-7B-Instruct"))])
    assert valid.exit_code == 0, valid.output
    assert commit  # the plan above was made from this commit's files


def test_the_revision_annotation_pins_the_commit(hub: FakeHub, hf_env: Path, tmp_path: Path) -> None:
    first = SHAPES["llama"].publish(hub)
    moved = dict(SHAPES["llama"].config, max_position_embeddings=8192)
    hub.commit(SHAPES["llama"].repo, {"config.json": json.dumps(moved)})
    pinned = plan(workspace(tmp_path, SHAPES["llama"].repo, annotations={"kaito.sh/model-revision": first}))
    latest = plan(workspace(tmp_path, SHAPES["llama"].repo))
    assert json.loads(pinned.output)["context_length"] > json.loads(latest.output)["context_length"] == 8192


def test_validate_names_the_hub_problem(hub: FakeHub, hf_env: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("meta-llama/Llama-3.1-8B-Instruct", SHAPES["llama"].files(), gated="manual")
    missing = CliRunner().invoke(validate, [str(workspace(tmp_path, "nobody/nothing"))])
    assert missing.exit_code == 1
    assert "inference.preset.name: Hugging Face repository nobody/nothing not found" in missing.output
    gated = CliRunner().invoke(validate, [str(workspace(tmp_path, "meta-llama/Llama-3.1-8B-Instruct"))])
    assert gated.exit_code == 1 and "is a gated repository" in gated.output and "HF_TOKEN" in gated.output
    hub.grant("meta-llama/Llama-3.1-8B-Instruct", TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    no_secret = CliRunner().invoke(validate, [str(workspace(tmp_path, "meta-llama/Llama-3.1-8B-Instruct"))])
    assert "This preset requires authentication and needs a modelAccessSecret with HF_TOKEN key" \
        in no_secret.output
    ok = CliRunner().invoke(validate, [str(workspace(tmp_path, "meta-llama/Llama-3.1-8B-Instruct",
                                                     secret="hf-token"))])
    assert ok.exit_code == 0, ok.output
    assert TOKEN not in no_secret.output + gated.output


def test_validate_offline_uses_the_cache_or_says_what_is_missing(
    hub: FakeHub, hf_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SHAPES["mistral"].publish(hub)
    path = workspace(tmp_path, SHAPES["mistral"].repo)
    assert CliRunner().invoke(validate, [str(path)]).exit_code == 0  # online: fills the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.stop()
    again = CliRunner().invoke(validate, [str(path)])
    assert again.exit_code == 0, again.output
    other = CliRunner().invoke(validate, [str(workspace(tmp_path, "microsoft/phi-4"))])
    assert other.exit_code == 1
    assert "offline, and microsoft/phi-4@main is not in the Hugging Face cache" in other.output
