"""A preset for any Hugging Face model, from its ``config.json`` and file listing (KAITO's generic path).

``inference.preset.name: org/model`` (KAITO since v0.9) names a repository instead of a catalog preset.
The edge that can reach the Hub (``kaito_core.artifacts.hub_presets``) reads the repository at one commit
and hands the parsed ``config.json`` and the listing here; this module is pure and builds the
``Preset`` the planner sizes like any other:

- architecture numbers from ``config.json`` (a multimodal model's ``text_config`` or ``llm_config``
  first, as KAITO's generator merges them): layers, attention and KV heads (``multi_query`` means one),
  head dim (``head_dim``, else hidden size / heads), context limit (``max_position_embeddings`` and the
  other names KAITO reads; 2048 when none is given, KAITO's default); DeepSeek-style MLA caches one
  latent of ``kv_lora_rank + qk_rope_head_dim`` values per layer;
- the weights: the repository's top-level ``*.safetensors`` (Mistral's ``consolidated*`` files when that
  is all there is, then loaded with ``--load-format mistral``); no safetensors is refused (kaito loads no
  pickled ``.bin`` weights);
- requirements as KAITO states them for generic models: total GPU memory = the weights' size, disk =
  weights + 80Gi; the planner's estimator decides the GPU count;
- the runtime: every installed runtime whose ``supports_architecture(name)`` accepts one of
  ``config.json``'s ``architectures`` (vLLM first, KAITO's default; then the others by name). vLLM
  answers from the list KAITO checks against; a transformers runtime plugin would answer for what
  vLLM lacks. None accepting it is an error naming the architecture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaito_core.plugins import (
    DTYPE_BYTES,
    Architecture,
    GiB,
    ModelSource,
    PlanError,
    Preset,
    Requirements,
    Runtime,
    WeightFile,
    WeightFormat,
)

#: KAITO's generator: disk = weights + this (SystemFileDiskSizeGiB) and the context when none is given.
SYSTEM_DISK = 80 * GiB
DEFAULT_CONTEXT = 2048
#: config.json keys, in KAITO's order of preference (generator configKeyMap).
CONTEXT_KEYS = ("max_position_embeddings", "n_ctx", "seq_length", "max_seq_len", "max_sequence_length",
                "model_max_length")
LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers")
HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads")
KV_HEAD_KEYS = ("num_key_value_heads", "n_head_kv", "n_kv_heads")
HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
HEAD_DIM_KEYS = ("head_dim", "attention_head_dim")


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None = None


class HubModelError(PlanError):
    """The repository cannot be served: the message says why and what to do."""


def preset_from_hub(
    repo: str,
    commit: str,
    config: Mapping[str, Any],
    files: Sequence[RepoFile],
    *,
    gated: bool,
    runtimes: Mapping[str, Runtime],
) -> Preset:
    """The ``Preset`` for ``repo`` at ``commit``; ``HubModelError`` when no installed runtime serves it."""
    text = _merged(config)
    architectures = [a for a in config.get("architectures") or text.get("architectures") or []
                     if isinstance(a, str)]
    serving = _runtimes_for(architectures, runtimes)
    if not serving:
        named = ", ".join(architectures) or "(config.json names none)"
        kinds = ", ".join(n for n, r in runtimes.items() if getattr(r, "supports_architecture", None)) \
            or "none installed"
        raise HubModelError(
            f"{repo}: architecture {named} is not served by any installed runtime that serves Hugging "
            f"Face models (runtimes that do: {kinds}); choose a model of a supported architecture or "
            "install a runtime plugin that serves it"
        )
    weights, mistral_format = _weights(repo, files)
    dtype = _dtype(text, config)
    quant = (config.get("quantization_config") or text.get("quantization_config") or {}).get("quant_method")
    architecture = _architecture(repo, text, weights.total_bytes, dtype)
    total = weights.total_bytes
    options: dict[str, Any] = {}
    if mistral_format:
        options.update({"load-format": "mistral", "config-format": "mistral", "tokenizer-mode": "mistral"})
    if quant:
        options["dtype"] = "auto"  # KAITO: vLLM picks the compute dtype of a quantized checkpoint
    return Preset(
        name=repo,
        family="huggingface",
        source=ModelSource(repo, commit, f"https://huggingface.co/{repo}"),
        formats=(WeightFormat("safetensors", str(quant or _short(dtype)), weights.files),),
        architecture=architecture,
        requirements=Requirements(gpu_count=1, total_gpu_memory=total, per_gpu_memory=0,
                                  disk=-(-(total + SYSTEM_DISK) // GiB) * GiB),
        runtimes=tuple(serving),
        default_runtime=serving[0],
        license=str(config.get("license") or "see the model card"),
        runtime_defaults={name: dict(options) for name in serving},
        requires_auth=gated,
        downloaded_at_runtime=True,
        description=f"{repo} at {commit[:12]} ({', '.join(architectures) or 'architecture not stated'})",
        distributed_inference=True,
    )


def _merged(config: Mapping[str, Any]) -> dict[str, Any]:
    """``text_config``/``llm_config`` under the top level, as KAITO's generator merges them."""
    merged = dict(config)
    nested = config.get("text_config") or config.get("llm_config")
    if isinstance(nested, Mapping):
        for key, value in nested.items():
            merged.setdefault(key, value)
        # the nested config's numbers describe the language model: they win over a wrapper's
        for key in (*LAYER_KEYS, *HEAD_KEYS, *KV_HEAD_KEYS, *HIDDEN_KEYS, *HEAD_DIM_KEYS, *CONTEXT_KEYS):
            if key in nested:
                merged[key] = nested[key]
    return merged


def _int(config: Mapping[str, Any], keys: Sequence[str], default: int = 0) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value > 0:
            return int(value)
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return default


def _runtimes_for(architectures: Sequence[str], runtimes: Mapping[str, Runtime]) -> list[str]:
    ordered = sorted(runtimes, key=lambda name: (name != "vllm", name))
    serving = []
    for name in ordered:
        check = getattr(runtimes[name], "supports_architecture", None)
        if check is None:
            continue
        # KAITO: a config.json naming no architecture is assumed to be served by vLLM
        if (not architectures and name == "vllm") or any(check(a) for a in architectures):
            serving.append(name)
    return serving


def _weights(repo: str, files: Sequence[RepoFile]) -> tuple[WeightFormat, bool]:
    top = [f for f in files if f.path.endswith(".safetensors") and "/" not in f.path]
    standard = [f for f in top if not f.path.startswith("consolidated")]
    mistral = [f for f in top if f.path.startswith("consolidated")]
    chosen = standard or mistral
    if not chosen:
        pickled = [f.path for f in files if f.path.endswith((".bin", ".pt", ".pth"))]
        why = (f"it has only pickled weights ({', '.join(pickled[:3])}), which kaito does not load"
               if pickled else "it has no weights kaito can load")
        raise HubModelError(f"{repo}: no safetensors weights at the top of the repository: {why}; choose "
                            "a repository that publishes *.safetensors")
    weight_files = tuple(WeightFile(f.path, f.size, f.sha256) for f in sorted(chosen, key=lambda f: f.path))
    return WeightFormat("safetensors", "", weight_files), not standard


def _dtype(text: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    value = str(config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype")
                or text.get("dtype") or "bfloat16")
    return value if value in DTYPE_BYTES else "bfloat16"


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)


def _architecture(repo: str, text: Mapping[str, Any], weight_bytes: int, dtype: str) -> Architecture:
    layers = _int(text, LAYER_KEYS)
    heads = _int(text, HEAD_KEYS)
    hidden = _int(text, HIDDEN_KEYS)
    if not layers or not heads:
        raise HubModelError(f"{repo}: config.json states no layer or attention-head count "
                            f"({LAYER_KEYS[0]}, {HEAD_KEYS[0]}); kaito cannot size its KV cache")
    kv_heads = _int(text, KV_HEAD_KEYS) or (1 if text.get("multi_query") is True else heads)
    head_dim = _int(text, HEAD_DIM_KEYS) or (hidden // heads if hidden else 0)
    kv_lora_rank = text.get("kv_lora_rank")
    if isinstance(kv_lora_rank, int) and kv_lora_rank > 0:
        # MLA: one latent of kv_lora_rank + qk_rope_head_dim per layer, written as one "KV head" whose K
        # and V halves make that many values
        latent = kv_lora_rank + _int(text, ("qk_rope_head_dim",))
        kv_heads, head_dim = 1, latent // 2
    if not head_dim:
        raise HubModelError(f"{repo}: config.json states neither head_dim nor hidden_size")
    # 16-bit KV cache whatever the weights' dtype, as KAITO's estimator assumes
    cache_dtype = dtype if DTYPE_BYTES.get(dtype) == 2 else "bfloat16"
    return Architecture(
        parameters=int(weight_bytes / DTYPE_BYTES.get(dtype, 2)),
        layers=layers,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context_length=_int(text, CONTEXT_KEYS, DEFAULT_CONTEXT),
        dtype=cache_dtype,
    )
