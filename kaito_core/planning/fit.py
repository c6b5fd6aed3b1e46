"""Does a preset fit the hardware with a runtime, and how: the memory arithmetic, no I/O.

vLLM follows KAITO's node estimator (``pkg/workspace/estimator/nodesestimator``) so the numbers match:

    modelSize  = safetensors bytes x 1.02               (vLLM's in-memory weights are ~2% larger)
    avail      = GPU memory per GPU x utilization        (0.84; 0.82 on the A10)
    reserve    = base overhead + maxModelLen x bytesPerToken / GPUs per node
    perGPU     = (avail - reserve) / 1.05                (activations, CUDA graphs grow with weights)
    minGPUs    = floor(modelSize / perGPU) + 1
    nodes      = ceil(minGPUs / GPUs per node)

llama.cpp loads one GGUF file whole: file + f16 KV cache for the context + overhead must fit the
usable memory of one node (90% of its GPUs' memory with every layer offloaded, or 80% of its RAM on a
CPU), trying the largest quantization first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaito_core.planning.hardware import Hardware
from kaito_core.planning.quantity import gib
from kaito_core.plugins import MemoryEstimate, Preset, WeightFormat

WEIGHT_EXPANSION = 1.02
OVERHEAD_WEIGHT_FACTOR = 0.05
#: Share of GPU memory llama.cpp may fill (the CUDA context and driver keep the rest).
LLAMACPP_GPU_FRACTION = 0.90
#: Share of a machine's RAM the model may take (the OS, the server and page cache need the rest).
CPU_MEMORY_FRACTION = 0.80


class NoFit(Exception):
    """This runtime/format does not fit this hardware; the message says why, in numbers."""


@dataclass(frozen=True)
class Fit:
    runtime: str
    weights: WeightFormat
    context_length: int
    node_count: int
    gpus_per_node: int  # GPUs each pod requests; 0 on CPU
    tensor_parallel: int
    pipeline_parallel: int
    gpu_memory_utilization: float
    n_gpu_layers: int
    threads: int
    memory: MemoryEstimate
    summary: str


def kaito_total_memory_check(preset: Preset, hardware: Hardware) -> None:
    """KAITO's admission check: the requested nodes' GPU memory against the preset's requirement."""
    required = preset.requirements.total_gpu_memory
    if not hardware.has_gpu or required <= 0 or hardware.total_gpu_memory >= required:
        return
    if hardware.kind == "instance-type":
        what = f"Instance type {hardware.instance_type}"
    else:
        what = f"The target ({hardware.description})"
    raise NoFit(
        f"Insufficient total GPU memory: {what} has a total of {gib(hardware.total_gpu_memory)}, "
        f"but preset {preset.name} requires at least {gib(required)}"
    )


def fit_vllm(
    preset: Preset,
    weights: WeightFormat,
    hardware: Hardware,
    context: int,
    base_overhead: int,
    utilization: float,
) -> Fit:
    if not hardware.has_gpu:
        raise NoFit("vLLM needs an NVIDIA GPU and the target has none")
    gpus = hardware.gpus_per_node
    per_gpu = hardware.gpu_memory
    model_size = weights.total_bytes * WEIGHT_EXPANSION
    avail = per_gpu * utilization
    bytes_per_token = preset.architecture.kv_cache_bytes_per_token()
    kv_total = context * bytes_per_token
    reserve = base_overhead + kv_total / gpus
    notes = [
        f"weights: {gib(weights.total_bytes)} {weights.format} x {WEIGHT_EXPANSION} = {gib(model_size)}",
        f"usable per GPU: {gib(per_gpu)} x {utilization} = {gib(avail)}",
        f"reserve per GPU: {gib(base_overhead)} + {context} tokens x {bytes_per_token} B/token / "
        f"{gpus} GPU(s) = {gib(reserve)}",
    ]
    if avail <= reserve:
        raise NoFit(
            f"the reserve per GPU ({gib(reserve)}: {gib(base_overhead)} base + KV cache for {context} "
            f"tokens) does not leave room for weights in the usable {gib(avail)} of a {gib(per_gpu)} "
            f"{hardware.gpu_model}"
        )
    left = (avail - reserve) / (1 + OVERHEAD_WEIGHT_FACTOR)
    min_gpus = int(model_size / left) + 1
    nodes = math.ceil(min_gpus / gpus)
    notes += [
        f"left for weights per GPU: ({gib(avail)} - {gib(reserve)}) / {1 + OVERHEAD_WEIGHT_FACTOR} "
        f"= {gib(left)}",
        f"GPUs needed: floor({gib(model_size)} / {gib(left)}) + 1 = {min_gpus}; "
        f"nodes: ceil({min_gpus} / {gpus}) = {nodes}",
    ]
    if nodes > 1 and not preset.distributed_inference:
        raise NoFit(
            "models with disabled support distributed inference cannot be distributed across more than 1 GPU "
            f"node, please use a node with larger GPU memory, calculated nodes: {nodes} "
            f"({gib(model_size)} of weights, {gib(left)} left per {gib(per_gpu)} GPU at {context} tokens)"
        )
    if nodes > hardware.nodes and not hardware.can_add_nodes:
        raise NoFit(
            f"needs {nodes} nodes of {gpus}x {hardware.gpu_model} but only {hardware.nodes} match the "
            "label selector"
        )
    total_gpus = nodes * gpus
    overhead = base_overhead * total_gpus + OVERHEAD_WEIGHT_FACTOR * model_size
    required = model_size + kv_total + overhead
    memory = MemoryEstimate(
        weights=int(model_size),
        kv_cache=int(kv_total),
        overhead=int(overhead),
        required=int(required),
        available=int(avail * total_gpus),
        per_device=int(required / total_gpus),
        notes=tuple(notes),
    )
    summary = (
        f"{gib(model_size)} weights + {gib(kv_total)} KV cache ({context} tokens) + {gib(overhead)} overhead "
        f"= {gib(required)} in {gib(avail * total_gpus)} usable on {nodes} node(s) x {gpus} "
        f"{hardware.gpu_model}"
    )
    return Fit(
        runtime="vllm",
        weights=weights,
        context_length=context,
        node_count=nodes,
        gpus_per_node=gpus,
        tensor_parallel=gpus,
        pipeline_parallel=nodes,
        gpu_memory_utilization=utilization,
        n_gpu_layers=0,
        threads=0,
        memory=memory,
        summary=summary,
    )


#: A CPU runtime computes in float32: 16-bit safetensors weights double in memory.
CPU_FLOAT32_EXPANSION = 2


def fit_host_memory(
    preset: Preset, weights: WeightFormat, hardware: Hardware, context: int, overhead: int, runtime: str
) -> Fit:
    """A safetensors runtime that runs on CPUs (transformers) on a target without GPUs: weights in
    float32, the KV cache and the runtime's overhead in host memory, one node."""
    model_size = weights.total_bytes * CPU_FLOAT32_EXPANSION
    bytes_per_token = preset.architecture.kv_cache_bytes_per_token() * CPU_FLOAT32_EXPANSION
    kv_total = context * bytes_per_token
    required = model_size + kv_total + overhead
    notes = (
        f"weights: {gib(weights.total_bytes)} {weights.format} as float32 x {CPU_FLOAT32_EXPANSION} = "
        f"{gib(model_size)}",
        f"KV cache: {context} tokens x {bytes_per_token} B/token = {gib(kv_total)}; overhead {gib(overhead)}",
    )
    if required > hardware.memory:
        raise NoFit(f"{runtime} on the CPU needs {gib(required)} of RAM ({notes[0]}), "
                    f"{hardware.description} has {gib(hardware.memory)}")
    memory = MemoryEstimate(weights=int(model_size), kv_cache=int(kv_total), overhead=int(overhead),
                            required=int(required), available=int(hardware.memory), notes=notes)
    return Fit(runtime=runtime, weights=weights, context_length=context, node_count=1, gpus_per_node=0,
               tensor_parallel=1, pipeline_parallel=1, gpu_memory_utilization=0.0, n_gpu_layers=0,
               threads=0, memory=memory,
               summary=f"{gib(required)} of {gib(hardware.memory)} RAM on the CPU")


def fit_llamacpp(
    preset: Preset,
    hardware: Hardware,
    context: int,
    overhead: int,
    runtime: str = "llamacpp",
) -> Fit:
    """The largest GGUF that fits one node: on its GPUs when it has them, else (or then) on its CPUs."""
    ggufs = sorted(
        (f for f in preset.formats if f.format == "gguf"), key=lambda f: f.total_bytes, reverse=True
    )
    if not ggufs:
        raise NoFit(f"preset {preset.name} ships no GGUF weights for llama.cpp")
    bytes_per_token = preset.architecture.kv_cache_bytes_per_token("float16")
    kv = context * bytes_per_token
    reasons: list[str] = []
    places: list[tuple[str, float]] = []
    if hardware.has_gpu:
        places.append(("gpu", hardware.gpus_per_node * hardware.gpu_memory * LLAMACPP_GPU_FRACTION))
    if hardware.memory > 0:
        places.append(("cpu", hardware.memory * CPU_MEMORY_FRACTION))
    if not places:
        raise NoFit("the target states neither GPU memory nor RAM")
    for place, usable in places:
        for weights in ggufs:
            required = weights.total_bytes + kv + overhead
            if required <= usable:
                return _llamacpp_fit(runtime, weights, hardware, place, context, kv, overhead, usable)
        smallest = ggufs[-1]
        where = (
            f"{gib(usable)} usable of {hardware.gpus_per_node}x {gib(hardware.gpu_memory)} GPU memory"
            if place == "gpu"
            else f"{gib(usable)} usable of {gib(hardware.memory)} RAM"
        )
        reasons.append(
            f"the smallest GGUF ({smallest.quantization}, {gib(smallest.total_bytes)}) + {gib(kv)} KV cache "
            f"({context} tokens) + {gib(overhead)} overhead = "
            f"{gib(smallest.total_bytes + kv + overhead)} exceeds {where}"
        )
    raise NoFit("; ".join(reasons))


def _llamacpp_fit(
    runtime: str,
    weights: WeightFormat,
    hardware: Hardware,
    place: str,
    context: int,
    kv: int,
    overhead: int,
    usable: float,
) -> Fit:
    required = weights.total_bytes + kv + overhead
    notes = [
        f"weights: {weights.quantization} GGUF {gib(weights.total_bytes)}",
        f"KV cache (f16): {context} tokens = {gib(kv)}",
        f"overhead: {gib(overhead)}",
    ]
    if place == "gpu":
        per_gpu_usable = hardware.gpu_memory * LLAMACPP_GPU_FRACTION
        gpus = min(hardware.gpus_per_node, max(1, math.ceil(required / per_gpu_usable)))
        usable = per_gpu_usable * gpus
        notes.append(
            f"usable: {gpus} GPU(s) x {gib(hardware.gpu_memory)} x {LLAMACPP_GPU_FRACTION} = {gib(usable)}"
        )
        threads, layers = 0, -1
        where = f"{gpus}x {hardware.gpu_model}, all layers offloaded"
    else:
        gpus = 0
        notes.append(f"usable: {gib(hardware.memory)} RAM x {CPU_MEMORY_FRACTION} = {gib(usable)}")
        threads, layers = max(1, int(hardware.cpu_cores)), 0
        where = f"CPU ({threads} threads)"
    notes.append(f"required: {gib(required)} <= {gib(usable)}")
    memory = MemoryEstimate(
        weights=weights.total_bytes,
        kv_cache=kv,
        overhead=overhead,
        required=required,
        available=int(usable),
        per_device=int(required / gpus) if gpus else 0,
        notes=tuple(notes),
    )
    summary = (
        f"{weights.quantization} GGUF {gib(weights.total_bytes)} + {gib(kv)} KV cache ({context} tokens) + "
        f"{gib(overhead)} overhead = {gib(required)} in {gib(usable)} usable on {where}"
    )
    return Fit(
        runtime=runtime,
        weights=weights,
        context_length=context,
        node_count=1,
        gpus_per_node=gpus,
        tensor_parallel=1,
        pipeline_parallel=1,
        gpu_memory_utilization=LLAMACPP_GPU_FRACTION if gpus else 0.0,
        n_gpu_layers=layers,
        threads=threads,
        memory=memory,
        summary=summary,
    )
