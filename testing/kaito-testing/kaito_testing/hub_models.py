"""Hugging Face model repositories shaped like real ones, small enough to serve from the FakeHub.

Each ``ModelShape`` has the publisher's ``config.json`` numbers for one real architecture (llama,
qwen2, mistral, phi3, gemma3, gpt-oss) and a ``model.safetensors.index.json`` whose ``weight_map``
names the architecture's real tensors over the real shard file names and whose
``metadata.total_size`` is the real repository's tensor bytes. The shards themselves are tiny valid
safetensors files (a header and no tensors): what a planner reads (config and index) is real-sized,
what a download moves is small.

Sources of the numbers: each repository's ``config.json`` and index as published on the Hub, checked
against KAITO's generated ``presets/workspace/models/model_catalog.yaml`` (v0.12: hiddenSize,
numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim, modelTokenLimit, modelFileSize).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaito_testing.hub import FakeHub


def tiny_safetensors(metadata: Mapping[str, str] | None = None) -> bytes:
    """A valid safetensors file with no tensors: 8-byte little-endian header length, then the header."""
    header = json.dumps({"__metadata__": dict(metadata or {"format": "pt"})}).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(header)) + header


@dataclass(frozen=True)
class ModelShape:
    repo: str
    config: dict[str, Any]
    shards: tuple[str, ...]
    total_size: int  # metadata.total_size of the real index: tensor bytes
    tensors: tuple[str, ...]  # every tensor name, spread over the shards in order
    extra_files: Mapping[str, str] = field(default_factory=dict)

    def index(self) -> dict[str, Any]:
        per_shard = -(-len(self.tensors) // len(self.shards))
        weight_map = {name: self.shards[i // per_shard] for i, name in enumerate(self.tensors)}
        return {"metadata": {"total_size": self.total_size}, "weight_map": weight_map}

    def files(self) -> dict[str, bytes | str]:
        files: dict[str, bytes | str] = {
            "config.json": json.dumps(self.config, indent=2),
            "generation_config.json": json.dumps({"_from_model_config": True}),
            "README.md": f"# {self.repo}\n\nA small stand-in with the real config and index.\n",
        }
        if len(self.shards) > 1:
            files["model.safetensors.index.json"] = json.dumps(self.index(), indent=2)
        for shard in self.shards:
            files[shard] = tiny_safetensors({"format": "pt", "shard": shard})
        files.update(self.extra_files)
        return files

    def publish(self, hub: FakeHub, *, repo: str | None = None, gated: bool | str = False) -> str:
        """Add this model to ``hub`` (under ``repo`` or its own id); returns the commit."""
        return hub.add_repo(repo or self.repo, self.files(), gated=gated)


def _shards(count: int, *, zero_based: bool = False) -> tuple[str, ...]:
    if zero_based:  # gpt-oss numbers its shards model-00000-of-00002 ... model-00002-of-00002
        return tuple(f"model-{i:05d}-of-{count - 1:05d}.safetensors" for i in range(count))
    return tuple(f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1))


def _decoder_tensors(layers: int, attention: tuple[str, ...], mlp: tuple[str, ...],
                     norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm"),
                     prefix: str = "model", lm_head: bool = True) -> tuple[str, ...]:
    names = [f"{prefix}.embed_tokens.weight"]
    for layer in range(layers):
        base = f"{prefix}.layers.{layer}"
        names += [f"{base}.self_attn.{p}" for p in attention]
        names += [f"{base}.mlp.{p}" for p in mlp]
        names += [f"{base}.{n}.weight" for n in norms]
    names.append(f"{prefix}.norm.weight")
    if lm_head:
        names.append("lm_head.weight")
    return tuple(names)


_QKVO = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight")
_GATED_MLP = ("gate_proj.weight", "up_proj.weight", "down_proj.weight")

LLAMA_3_1_8B = ModelShape(
    repo="meta-llama/Llama-3.1-8B-Instruct",
    config={
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 131072, "mlp_bias": False, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256,
    },
    shards=_shards(4),
    total_size=16_060_522_496,  # KAITO: 14.96Gi
    tensors=_decoder_tensors(32, _QKVO, _GATED_MLP),
)

QWEN2_5_CODER_7B = ModelShape(
    repo="Qwen/Qwen2.5-Coder-7B-Instruct",
    config={
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584,
        "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 32768,
        "max_window_layers": 28, "num_attention_heads": 28, "num_hidden_layers": 28,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
        "use_cache": True, "use_sliding_window": False, "vocab_size": 152064,
    },
    shards=_shards(4),
    total_size=15_231_233_024,  # KAITO: 14.19Gi
    tensors=_decoder_tensors(28, ("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                  "v_proj.weight", "v_proj.bias", "o_proj.weight"), _GATED_MLP),
)

MISTRAL_7B_INSTRUCT = ModelShape(
    repo="mistralai/Mistral-7B-Instruct-v0.3",
    config={
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
        "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0", "use_cache": True,
        "vocab_size": 32768,
    },
    shards=_shards(3),
    total_size=14_496_047_104,  # KAITO: 13.50Gi
    tensors=_decoder_tensors(32, _QKVO, _GATED_MLP),
)

PHI3_MINI_4K = ModelShape(
    repo="microsoft/Phi-3-mini-4k-instruct",
    config={
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000,
        "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 32, "original_max_position_embeddings": 4096, "pad_token_id": 32000,
        "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
        "sliding_window": 2047, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.40.2", "use_cache": True, "vocab_size": 32064,
    },
    shards=_shards(2),
    total_size=7_642_159_104,  # KAITO: 7.12Gi
    tensors=_decoder_tensors(32, ("qkv_proj.weight", "o_proj.weight"),
                             ("gate_up_proj.weight", "down_proj.weight")),
)

GEMMA3_4B_IT = ModelShape(
    repo="google/gemma-3-4b-it",
    config={
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
        "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "text_config": {
            "model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
            "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
            "max_position_embeddings": 131072, "sliding_window": 1024,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "vocab_size": 262208,
        },
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": 1152, "image_size": 896,
            "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14,
            "vision_use_head": False,
        },
        "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    },
    shards=_shards(2),
    total_size=8_600_158_944,  # KAITO: 8.01Gi
    tensors=_decoder_tensors(34, (*_QKVO, "q_norm.weight", "k_norm.weight"), _GATED_MLP,
                             norms=("input_layernorm", "post_attention_layernorm",
                                    "pre_feedforward_layernorm", "post_feedforward_layernorm"),
                             prefix="language_model.model", lm_head=False),
    extra_files={"preprocessor_config.json": json.dumps({"image_processor_type": "Gemma3ImageProcessor"})},
)

GPT_OSS_20B = ModelShape(
    repo="openai/gpt-oss-20b",
    config={
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
        "attention_dropout": 0.0, "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64,
        "hidden_act": "silu", "hidden_size": 2880, "initial_context_length": 4096, "initializer_range": 0.02,
        "intermediate_size": 2880, "layer_types": ["sliding_attention", "full_attention"] * 12,
        "max_position_embeddings": 131072, "num_attention_heads": 64, "num_experts_per_tok": 4,
        "num_hidden_layers": 24, "num_key_value_heads": 8, "num_local_experts": 32,
        "output_router_logits": False, "pad_token_id": 199999,
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                         "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": False},
        "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.55.0.dev0",
        "use_cache": True, "vocab_size": 201088,
    },
    shards=_shards(3, zero_based=True),
    total_size=13_761_264_768,  # MXFP4 experts: about half of KAITO's 25.63Gi bf16-equivalent figure
    tensors=_decoder_tensors(24, (*_QKVO, "sinks"), (
        "router.weight", "experts.gate_up_proj_blocks", "experts.gate_up_proj_scales",
        "experts.down_proj_blocks", "experts.down_proj_scales")),
)

#: Every shape, by the architecture's ``model_type``.
SHAPES: dict[str, ModelShape] = {
    "llama": LLAMA_3_1_8B,
    "qwen2": QWEN2_5_CODER_7B,
    "mistral": MISTRAL_7B_INSTRUCT,
    "phi3": PHI3_MINI_4K,
    "gemma3": GEMMA3_4B_IT,
    "gpt_oss": GPT_OSS_20B,
}
