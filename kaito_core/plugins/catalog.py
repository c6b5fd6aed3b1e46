"""Presets from KAITO's model catalog: one builder for every preset package that carries KAITO v0.12
catalog entries (phi4, llama3, mistral, qwen, deepseek, gptoss), so each package holds only its data.

A catalog entry (``spec``) is a dict with the numbers of KAITO's ``model_catalog.yaml`` and
``supported_models.yaml``: name, repo, revision, weights_bytes, quantization, layout, shards, the
architecture numbers, dtype, license, vllm options, tuning modules, requires_auth, description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_core.plugins.presets import (
    Architecture,
    ModelSource,
    Preset,
    Requirements,
    TuningSupport,
    WeightFile,
    WeightFormat,
)
from kaito_core.plugins.units import GiB

#: KAITO's generic preset rule: disk = the weights' size + this (SystemFileDiskSizeGiB).
SYSTEM_DISK = 80 * GiB


def _shard_names(layout: str, count: int) -> list[str]:
    """Shard names as the repository lays them out: Hugging Face's ``model-0000N-of-0000M``
    (gpt-oss counts from 0), or Mistral's ``consolidated`` files that KAITO loads with
    ``--load-format mistral``."""
    if layout == "consolidated":
        if count == 1:
            return ["consolidated.safetensors"]
        return [f"consolidated-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    if layout == "hf-zero-based":
        return [f"model-{i:05d}-of-{count - 1:05d}.safetensors" for i in range(count)]
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def catalog_weight_files(layout: str, count: int, total: int) -> tuple[WeightFile, ...]:
    """ESTIMATED per-shard sizes: the total split evenly over the layout's shard names (sha256 None:
    not known, never invented)."""
    names = _shard_names(layout, count)
    base, rest = divmod(total, len(names))
    last = len(names) - 1
    return tuple(WeightFile(n, base + (rest if i == last else 0), None) for i, n in enumerate(names))


def catalog_preset(spec: Mapping[str, Any], family: str) -> Preset:
    """The Preset of one KAITO catalog entry: served by vLLM, downloaded at runtime (KAITO's
    DownloadAtRuntime), sized by KAITO's generic rule (GPU memory = weights, disk = weights + 80Gi)."""
    total = spec["weights_bytes"]
    quantization = spec["quantization"]
    return Preset(
        name=spec["name"],
        downloaded_at_runtime=True,
        family=family,
        source=ModelSource(spec["repo"], spec["revision"], f"https://huggingface.co/{spec['repo']}"),
        formats=(WeightFormat("safetensors", quantization,
                              catalog_weight_files(spec["layout"], spec["shards"], total)),),
        architecture=Architecture(
            parameters=spec["parameters"],
            layers=spec["layers"],
            attention_heads=spec["attention_heads"],
            kv_heads=spec["kv_heads"],
            head_dim=spec["head_dim"],
            context_length=spec["context_length"],
            # the KV cache is 16-bit whatever the weights are (KAITO's estimator assumes fp16 too)
            dtype="bfloat16" if spec["dtype"] == "fp8" else spec["dtype"],
        ),
        requirements=Requirements(gpu_count=1, total_gpu_memory=total, per_gpu_memory=0,
                                  disk=-(-(total + SYSTEM_DISK) // GiB) * GiB),
        runtimes=("vllm",),
        default_runtime="vllm",
        license=spec["license"],
        runtime_defaults={"vllm": {**spec["vllm"], **({"dtype": "auto"} if quantization != "bf16" else {})}},
        tuning=TuningSupport(("lora", "qlora"), tuple(spec["tuning"])) if spec["tuning"] else None,
        requires_auth=spec["requires_auth"],
        description=spec["description"],
        distributed_inference=True,  # KAITO: vLLM-compatible models support distributed inference
    )
