"""The preset contract: a model the platform knows how to run, and the one source of its requirements.

A preset plugin builds these plain, immutable values and hands them to the core through
``kaito_register_presets(register)``. Units: every memory or file size is in bytes (``GiB`` helps write
them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Bytes per element of the dtypes the memory math knows.
DTYPE_BYTES: Mapping[str, float] = {
    "float32": 4,
    "fp32": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
}


@dataclass(frozen=True)
class WeightFile:
    """One file of a model's weights as the publisher ships it."""

    name: str  # path relative to the model directory, e.g. "model-00001-of-00002.safetensors"
    size: int  # bytes
    sha256: str | None = None  # hex digest; None only where the publisher does not state one


@dataclass(frozen=True)
class WeightFormat:
    """One way a preset's weights exist: safetensors for vLLM, or one GGUF quantization for llama.cpp."""

    format: str  # "safetensors" | "gguf"
    quantization: str  # "bf16", "fp16", "Q4_K_M", "Q8_0", ...
    files: tuple[WeightFile, ...]
    source: ModelSource | None = None  # where these files come from, when not the preset's main source

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class ModelSource:
    """The upstream the numbers were read from and the weights come from."""

    repo: str  # e.g. "microsoft/Phi-3-mini-4k-instruct"
    revision: str  # pinned commit
    url: str = ""  # human-readable location of the model card


@dataclass(frozen=True)
class Architecture:
    """Numbers from the publisher's config.json that the memory math uses."""

    parameters: int
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    context_length: int  # the model's maximum context window
    dtype: str = "bfloat16"  # dtype of the released weights

    def kv_cache_bytes_per_token(self, dtype: str | None = None) -> int:
        """K and V, for every layer and KV head: 2 x layers x kv_heads x head_dim x bytes."""
        element = DTYPE_BYTES[dtype or self.dtype]
        return int(2 * self.layers * self.kv_heads * self.head_dim * element)


@dataclass(frozen=True)
class Requirements:
    """What the preset asks of a GPU node (KAITO's DiskStorage/GPUCount/TotalGPUMemory/PerGPUMemory)."""

    gpu_count: int
    total_gpu_memory: int
    per_gpu_memory: int
    disk: int


@dataclass(frozen=True)
class TuningSupport:
    methods: tuple[str, ...] = ("lora", "qlora")
    target_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preset:
    """A model the platform knows how to run: one source of truth for its requirements."""

    name: str  # "phi-3-mini-4k-instruct"
    family: str  # "phi3"
    source: ModelSource
    formats: tuple[WeightFormat, ...]
    architecture: Architecture
    requirements: Requirements
    runtimes: tuple[str, ...]  # supported runtime names, e.g. ("vllm", "llamacpp")
    default_runtime: str
    license: str
    chat_template: str | None = None  # Jinja template; None means "use the one in the weights"
    max_model_len: int | None = None  # runtime default; None means the architecture's context length
    runtime_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # runtime -> options
    tuning: TuningSupport | None = None
    requires_auth: bool = False  # needs a modelAccessSecret with HF_TOKEN
    #: KAITO's DownloadAtRuntime: its pods fetch the weights from the Hub instead of an image baked with
    #: them, so a modelAccessSecret is allowed even where none is required (KAITO's admission rule).
    downloaded_at_runtime: bool = False
    deprecated: bool = False
    #: Returns a local directory holding the files of the given format/quantization when they are
    #: available on this machine without a download (e.g. a model shipped in a PyPI package), else None.
    local_files: Callable[[WeightFormat], Path | None] | None = None
    description: str = ""
    #: Whether the model may be split over several nodes (KAITO's SupportDistributedInference()).
    distributed_inference: bool = False

    def format_for(self, fmt: str, quantization: str | None = None) -> WeightFormat | None:
        for candidate in self.formats:
            if candidate.format == fmt and (quantization is None or candidate.quantization == quantization):
                return candidate
        return None
