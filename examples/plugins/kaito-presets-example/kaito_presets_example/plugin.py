"""One preset, registered through the ``kaito.presets`` entry point.

SmolLM2-135M (HuggingFaceTB/SmolLM2-135M), numbers from its config.json: hidden_size 576, 30 layers,
9 attention heads, 3 KV heads (head_dim 64), intermediate_size 1536, vocab 49152 (tied embeddings),
max_position_embeddings 8192, bfloat16. Parameters: 30 x 3,540,096 + 28,311,552 + 576 = 134,515,008.
model.safetensors: 269,060,552 bytes, sha256 from the Hub's LFS pointer at the pinned revision.
"""

from __future__ import annotations

from collections.abc import Callable

from kaito_core.plugins import (
    Architecture,
    GiB,
    ModelSource,
    Preset,
    Requirements,
    WeightFile,
    WeightFormat,
    hookimpl,
)

SMOLLM2_135M = Preset(
    name="smollm2-135m",
    family="smollm2",
    source=ModelSource(
        repo="HuggingFaceTB/SmolLM2-135M",
        revision="93efa2f097d58c2a74874c7e644dbc9b0cee75a2",
        url="https://huggingface.co/HuggingFaceTB/SmolLM2-135M",
    ),
    formats=(
        WeightFormat(
            format="safetensors",
            quantization="bf16",
            files=(
                WeightFile(
                    "model.safetensors",
                    269_060_552,
                    "80521b40281d6ce74e35c9282c22539e75aa0ac8578892b2a59955ef78d55da1",
                ),
            ),
        ),
    ),
    architecture=Architecture(
        parameters=134_515_008,
        layers=30,
        attention_heads=9,
        kv_heads=3,
        head_dim=64,
        context_length=8192,
        dtype="bfloat16",
    ),
    requirements=Requirements(gpu_count=1, total_gpu_memory=1 * GiB, per_gpu_memory=0, disk=2 * GiB),
    runtimes=("vllm",),
    default_runtime="vllm",
    license="Apache-2.0",
    runtime_defaults={"vllm": {"dtype": "float16"}},
    description="SmolLM2 135M base model: an example of a third-party preset package",
)


@hookimpl
def kaito_register_presets(register: Callable[[Preset], None]) -> None:
    register(SMOLLM2_135M)
