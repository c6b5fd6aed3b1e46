"""The Phi-3 presets: numbers consistent with each other and with the publisher's config shapes."""

from __future__ import annotations

import re
from importlib.metadata import entry_points

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from kaito_presets_phi3 import PRESETS, PRESETS_BY_NAME, plugin
from kaito_presets_phi3.presets import PHI3_CHAT_TEMPLATE

from kaito_core.plugins import GiB, MiB, Preset, Registry

# config.json shapes: (hidden_size, intermediate_size, layers, vocab_size)
SHAPES = {"mini": (3072, 8192, 32, 32064), "medium": (5120, 17920, 40, 32064)}


def parameters(hidden: int, intermediate: int, layers: int, vocab: int, kv_heads: int, head_dim: int) -> int:
    """Phi-3: fused qkv, fused gate_up, two RMSNorms a layer, untied embedding and lm_head."""
    qkv = hidden * (hidden + 2 * kv_heads * head_dim)
    per_layer = qkv + hidden * hidden + hidden * 2 * intermediate + intermediate * hidden + 2 * hidden
    return layers * per_layer + 2 * vocab * hidden + hidden


def test_the_plugin_registers_all_five() -> None:
    registry = Registry()
    registry.register(plugin, distribution="kaito-presets-phi3")
    assert sorted(registry.presets()) == sorted(
        [
            "phi-3-mini-4k-instruct",
            "phi-3-mini-128k-instruct",
            "phi-3-medium-4k-instruct",
            "phi-3-medium-128k-instruct",
            "phi-3.5-mini-instruct",
        ]
    )
    assert registry.errors() == []


def test_the_entry_point_is_advertised() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="kaito.presets")}
    assert eps.get("phi3") == "kaito_presets_phi3.plugin"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_architecture_matches_the_config_shapes(preset: Preset) -> None:
    arch = preset.architecture
    size = "medium" if "medium" in preset.name else "mini"
    hidden, intermediate, layers, vocab = SHAPES[size]
    assert arch.layers == layers and arch.attention_heads * arch.head_dim == hidden
    assert arch.parameters == parameters(hidden, intermediate, layers, vocab, arch.kv_heads, arch.head_dim)
    # KAITO's bytes per token, 2 x layers x kvHeads x headDim x 2: the same dims as phi-4's 204800
    assert arch.kv_cache_bytes_per_token() == {"mini": 393_216, "medium": 204_800}[size]
    assert arch.context_length == (4096 if "4k" in preset.name else 131072)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_files_sum_to_the_weights(preset: Preset) -> None:
    arch = preset.architecture
    safetensors = preset.format_for("safetensors")
    assert safetensors is not None and safetensors.quantization == "bf16"
    # bf16 tensors are exactly 2 bytes a parameter; each shard adds its JSON header (a few KiB)
    assert 0 <= safetensors.total_bytes - 2 * arch.parameters < MiB
    for fmt in preset.formats:
        for file in fmt.files:
            assert file.size > 0
            assert file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", file.sha256)
        assert len({f.name for f in fmt.files}) == len(fmt.files)
    assert re.fullmatch(r"[0-9a-f]{40}", preset.source.revision)


def test_mini_4k_gguf_quantizations() -> None:
    preset = PRESETS_BY_NAME["phi-3-mini-4k-instruct"]
    params = preset.architecture.parameters
    fp16 = preset.format_for("gguf", "fp16")
    q4 = preset.format_for("gguf", "Q4_K_M")
    assert fp16 is not None and q4 is not None
    assert 0 < fp16.total_bytes - 2 * params < 16 * MiB  # 2 bytes a weight + GGUF metadata and vocab
    assert 4.5 < q4.total_bytes * 8 / params < 5.5  # Q4_K_M: about 4.8-5 bits a weight
    assert q4.source is not None and q4.source.repo == "microsoft/Phi-3-mini-4k-instruct-gguf"
    assert preset.runtimes == ("vllm", "llamacpp") and preset.default_runtime == "vllm"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_runtime_requirements_and_tuning(preset: Preset) -> None:
    assert preset.default_runtime in preset.runtimes and preset.license == "MIT"
    assert preset.runtime_defaults["vllm"] == {"dtype": "float16"}  # KAITO's phiRunParamsVLLM
    assert preset.tuning is not None and preset.tuning.methods == ("lora", "qlora")
    assert "qkv_proj" in preset.tuning.target_modules
    assert preset.requirements.gpu_count == 1 and not preset.distributed_inference
    # KAITO phi3/model.go: 28Gi medium, 8Gi phi-3.5-mini, 9Gi the other minis
    if "medium" in preset.name:
        assert preset.requirements.total_gpu_memory == 28 * GiB
    elif preset.name.startswith("phi-3.5"):
        assert preset.requirements.total_gpu_memory == 8 * GiB
    else:
        assert preset.requirements.total_gpu_memory == 9 * GiB


def test_chat_template_renders_phi3_turns() -> None:
    template = ImmutableSandboxedEnvironment().from_string(PHI3_CHAT_TEMPLATE)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert template.render(messages=messages, add_generation_prompt=True) == (
        "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
        "<|user|>\nBye<|end|>\n<|assistant|>\n"
    )
