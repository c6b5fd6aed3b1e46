"""Facts about GPU models the memory math needs, looked up by (part of) the product name.

The product name is what an instance-type catalog says ("NVIDIA A10") or what GPU feature discovery
puts in ``nvidia.com/gpu.product`` ("NVIDIA-A100-SXM4-80GB", "Tesla-V100-PCIE-16GB").
"""

from __future__ import annotations

from kaito_core.plugins import GiB

#: vLLM ``--gpu-memory-utilization`` as KAITO starts it: 0.84, and 0.82 on the A10 (its launcher's values).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.84
_UTILIZATION = {"A10": 0.82}

#: KAITO's node estimator's fixed per-GPU reserve (CUDA context, NCCL, activations, CUDA graphs):
#: 2.3 GiB, used when the vLLM runtime plugin is not installed to say otherwise.
DEFAULT_VLLM_OVERHEAD = int(2.3 * GiB)

#: llama.cpp beside weights and KV cache (compute buffers, CUDA context when on a GPU): 512 MiB,
#: used when the llama.cpp runtime plugin is not installed to say otherwise.
DEFAULT_LLAMACPP_OVERHEAD = 512 * 1024**2

# Compute capability by product family; bf16 needs 8.0 (Ampere) or newer.
_CAPABILITY = {
    "V100": "7.0",
    "T4": "7.5",
    "A10": "8.6",
    "A100": "8.0",
    "A40": "8.6",
    "L4": "8.9",
    "L40": "8.9",
    "H100": "9.0",
    "H200": "9.0",
    "B200": "10.0",
}


def _family(product: str, table: dict[str, object]) -> str | None:
    """The longest table key that appears as a word-ish token of the product name."""
    tokens = product.upper().replace("_", "-").replace(" ", "-").split("-")
    hits = [key for key in table if key.upper() in tokens]
    return max(hits, key=len) if hits else None


def compute_capability(product: str) -> str:
    family = _family(product, dict(_CAPABILITY))
    return _CAPABILITY[family] if family else ""


def gpu_memory_utilization(product: str) -> float:
    family = _family(product, dict(_UTILIZATION))
    return _UTILIZATION[family] if family else DEFAULT_GPU_MEMORY_UTILIZATION


def supports_bf16(capability: str) -> bool:
    """Unknown capability counts as modern: the user brought the GPU and knows it."""
    if not capability:
        return True
    try:
        return float(capability) >= 8.0
    except ValueError:
        return True
