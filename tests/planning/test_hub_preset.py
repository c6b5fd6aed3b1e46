"""planning.hub_preset: config.json + listing -> Preset, pure (KAITO's generic path)."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_core.planning.hub_preset import HubModelError, RepoFile, preset_from_hub
from kaito_core.plugins import GiB


class Serves:
    def __init__(self, *architectures: str) -> None:
        self.architectures = set(architectures)

    def supports_architecture(self, name: str) -> bool:
        return name in self.architectures


class ServesNothingSaid:
    """A runtime without supports_architecture: never chosen for a repository id."""


SHARDS = [RepoFile("model-00001-of-00002.safetensors", 3 * GiB, "a" * 64),
          RepoFile("model-00002-of-00002.safetensors", 1 * GiB, "b" * 64),
          RepoFile("original/model.safetensors", 4 * GiB), RepoFile("config.json", 900)]


def build(config: dict[str, Any], files: list[RepoFile] = SHARDS, **runtimes: Any) -> Any:
    serving = runtimes or {"vllm": Serves("DeepseekV3ForCausalLM", "FalconForCausalLM")}
    return preset_from_hub("org/m", "c" * 40, config, files, gated=False, runtimes=serving)


def test_mla_caches_one_latent_per_layer() -> None:
    preset = build({"architectures": ["DeepseekV3ForCausalLM"], "num_hidden_layers": 61,
                    "num_attention_heads": 128, "num_key_value_heads": 128, "hidden_size": 7168,
                    "kv_lora_rank": 512, "qk_rope_head_dim": 64, "max_position_embeddings": 163840,
                    "quantization_config": {"quant_method": "fp8"}})
    arch = preset.architecture
    assert arch.kv_cache_bytes_per_token() == (512 + 64) * 61 * 2  # KAITO's MLA bytes per token
    assert preset.formats[0].quantization == "fp8" and preset.runtime_defaults["vllm"] == {"dtype": "auto"}


def test_weights_are_the_top_level_safetensors_with_the_hubs_digests() -> None:
    preset = build({"architectures": ["FalconForCausalLM"], "n_layer": 32, "n_head": 71, "hidden_size": 4544,
                    "multi_query": True})
    (weights,) = preset.formats
    assert [f.name for f in weights.files] == ["model-00001-of-00002.safetensors",
                                               "model-00002-of-00002.safetensors"]
    assert weights.total_bytes == 4 * GiB and weights.files[0].sha256 == "a" * 64
    assert preset.architecture.kv_heads == 1 and preset.architecture.head_dim == 64
    assert preset.architecture.context_length == 2048  # KAITO's default when config.json names none
    assert preset.requirements.total_gpu_memory == 4 * GiB and preset.requirements.disk == 84 * GiB


def test_mistral_consolidated_files_load_in_mistral_format() -> None:
    files = [RepoFile("consolidated.safetensors", 2 * GiB)]
    preset = build({"architectures": ["FalconForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 2,
                    "head_dim": 64}, files)
    assert preset.runtime_defaults["vllm"]["load-format"] == "mistral"


def test_no_architecture_named_is_vllms_as_in_kaito() -> None:
    preset = build({"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 128},
                   vllm=Serves(), other=ServesNothingSaid())
    assert preset.runtimes == ("vllm",)


def test_runtimes_that_declare_the_architecture_vllm_first() -> None:
    config = {"architectures": ["X"], "num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 128}
    preset = build(config, transformers=Serves("X"), vllm=Serves("X"), llamacpp=ServesNothingSaid())
    assert preset.runtimes == ("vllm", "transformers") and preset.default_runtime == "vllm"
    only = build(config, transformers=Serves("X"), vllm=Serves())
    assert only.runtimes == ("transformers",)


def test_a_config_without_the_numbers_is_refused() -> None:
    with pytest.raises(HubModelError, match="states no layer or attention-head count"):
        build({"architectures": ["FalconForCausalLM"]})
