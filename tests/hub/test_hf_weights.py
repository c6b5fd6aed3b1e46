"""Weights from the Hugging Face Hub: `kaito model pull hf://ORG/REPO@REV DIR` (the init container's
download-at-runtime path) and `kaito model pack PRESET --from-hf`, through huggingface_hub itself
pointed at the FakeHub (HF_ENDPOINT)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kaito_testing.hub import FakeHub
from kaito_testing.hub_models import tiny_safetensors

from kaito_core.cli.main import cli
from kaito_core.plugins import (
    Architecture,
    GiB,
    ModelSource,
    Preset,
    Registry,
    Requirements,
    WeightFile,
    WeightFormat,
    hookimpl,
)

TOKEN = "hf_reader_token_0123456789"  # the token tests/hub/conftest.py's FakeHub knows
NAME = "model.safetensors"
WEIGHTS = tiny_safetensors({"format": "pt", "note": "weights"})
FILES: dict[str, bytes | str] = {
    "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}),
    "model.safetensors": WEIGHTS,
    "tokenizer.json": '{"version": "1.0"}',
    "pytorch_model.bin": b"\x80\x04pickle-never-pulled",
}


@pytest.fixture
def repo() -> str:
    return f"kaito-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def kaito_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "kaito-home"
    monkeypatch.setenv("KAITO_HOME", str(home))
    return home


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_pull_hf_into_a_directory_verified_hardlinked_and_not_again(
    hub: FakeHub, hf_env: Path, kaito_home: Path, tmp_path: Path
) -> None:
    commit = hub.add_repo("acme/tiny-llama", FILES)
    dest = tmp_path / "weights"
    result = run("model", "pull", f"hf://acme/tiny-llama@{commit}", str(dest), "-o", "json")
    assert result.exit_code == 0, result.output
    pulled = json.loads(result.output)
    assert pulled["digest"] == commit and pulled["bytesDownloaded"] == sum(
        len(c if isinstance(c, bytes) else c.encode()) for n, c in FILES.items() if n != "pytorch_model.bin"
    )
    assert sorted(p.name for p in dest.iterdir()) == [".kaito-pull.json", "config.json", "model.safetensors",
                                                       "tokenizer.json"]  # fmt: skip
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    # one copy: the file is a hard link to the blob in the Hugging Face cache under KAITO_HOME
    blobs = list((kaito_home / "huggingface").rglob("blobs/*"))
    assert any(os.path.samefile(b, dest / "model.safetensors") for b in blobs)

    asked = len(hub.requests)
    again = run("model", "pull", f"hf://acme/tiny-llama@{commit}", str(dest))
    assert again.exit_code == 0 and "verified: nothing to pull" in again.output
    assert len(hub.requests) == asked  # the restarted pod needed no Hub at all


def test_pull_hf_by_branch_with_include(hub: FakeHub, hf_env: Path, kaito_home: Path, tmp_path: Path) -> None:
    hub.add_repo("acme/tiny-llama", FILES)
    dest = tmp_path / "weights"
    result = run("model", "pull", "hf://acme/tiny-llama@main", str(dest), "--include", "model.safetensors",
                 "--include", "*.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.safetensors", "tokenizer.json"]  # fmt: skip
    elsewhere = str(tmp_path / "w2")
    missing = run("model", "pull", "hf://acme/tiny-llama@main", elsewhere, "--include", "nope.gguf")
    assert missing.exit_code == 1 and "nope.gguf not in acme/tiny-llama" in missing.output


def test_gated_repository_needs_the_token_and_never_shows_it(
    hub: FakeHub, hf_env: Path, kaito_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("acme/gated-llama", FILES, gated=True)
    refused = run("model", "pull", "hf://acme/gated-llama@main", str(tmp_path / "w1"))
    assert refused.exit_code == 1 and "HF_TOKEN" in refused.output and "modelAccessSecret" in refused.output
    assert len(refused.output.strip().splitlines()) == 1  # one line, no traceback
    hub.grant("acme/gated-llama", TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # what the init container gets from modelAccessSecret
    allowed = run("model", "pull", "hf://acme/gated-llama@main", str(tmp_path / "w2"))
    assert allowed.exit_code == 0, allowed.output
    assert TOKEN not in allowed.output + refused.output


@pytest.mark.parametrize("ref", ["hf://not-a-repo", "hf://acme/tiny@bad revision", "hf://a/b/c@main"])
def test_a_bad_hf_reference_is_one_clear_line(ref: str, kaito_home: Path, tmp_path: Path) -> None:
    result = run("model", "pull", ref, str(tmp_path / "w"))
    assert result.exit_code == 1 and "expected hf://ORG/REPO@REVISION" in result.output


def _preset(revision: str, sha256: str | None) -> Preset:
    return Preset(
        name="tiny-hub-model",
        family="test",
        source=ModelSource("acme/tiny-llama", revision),
        formats=(WeightFormat("safetensors", "bf16", (WeightFile(NAME, len(WEIGHTS), sha256),)),),
        architecture=Architecture(
            parameters=1000, layers=1, attention_heads=1, kv_heads=1, head_dim=8, context_length=128
        ),
        requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=1 * GiB),
        runtimes=("vllm",),
        default_runtime="vllm",
        license="apache-2.0",
    )


def _registry_with(preset: Preset) -> Registry:
    class Plugin:
        @hookimpl
        def kaito_register_presets(self, register: Any) -> None:
            register(preset)

    registry = Registry()
    registry.register(Plugin(), "tiny-hub-preset")
    return registry


def test_pack_from_hf_downloads_checks_and_pushes(
    hub: FakeHub, hf_env: Path, kaito_home: Path, registry: Any, repo: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    commit = hub.add_repo("acme/tiny-llama", FILES)
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    monkeypatch.setattr("kaito_core.plugins.default_registry", lambda: _registry_with(_preset(commit, sha)))
    ref = f"{registry.host}/{repo}:bf16"
    packed = run("model", "pack", "tiny-hub-model", "--from-hf", "--push", ref, "--no-progress")
    assert packed.exit_code == 0, packed.output
    assert f"as {ref}@sha256:" in packed.output
    pulled = run("model", "pull", ref, str(tmp_path / "out"), "-o", "json")
    assert json.loads(pulled.output)["files"] == [str(tmp_path / "out" / "model.safetensors")]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == WEIGHTS

    # the preset's sha256 is checked: a preset whose digest the Hub's file does not have is refused
    wrong = _registry_with(_preset(commit, "0" * 64))
    monkeypatch.setattr("kaito_core.plugins.default_registry", lambda: wrong)
    refused = run("model", "pack", "tiny-hub-model", "--from-hf", "--push", f"{ref}-bad", "--no-progress")
    assert refused.exit_code == 1 and "sha256" in refused.output


def test_pack_from_hf_at_another_revision(
    hub: FakeHub, hf_env: Path, kaito_home: Path, registry: Any, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = hub.add_repo("acme/tiny-llama", FILES)
    hub.commit("acme/tiny-llama", {"README.md": "# newer"})
    monkeypatch.setattr("kaito_core.plugins.default_registry", lambda: _registry_with(_preset("v0", None)))
    missing = run("model", "pack", "tiny-hub-model", "--from-hf", "--push", f"{registry.host}/{repo}:x")
    assert missing.exit_code == 1 and "revision v0 not found" in missing.output
    packed = run("model", "pack", "tiny-hub-model", "--from-hf", "--revision", first, "--push",
                 f"{registry.host}/{repo}:bf16", "--no-progress")  # fmt: skip
    assert packed.exit_code == 0, packed.output
    assert run("model", "pack", "tiny-hub-model", "--revision", "main").exit_code == 1  # needs --from-hf
