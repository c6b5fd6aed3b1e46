"""Which image the transformers runtime names: the CUDA build on GPU nodes, the CPU build elsewhere,
for serving (its container) and for tuning (the trainer of the tuning Job)."""

from __future__ import annotations

from kaito_runtime_transformers.runtime import CPU_IMAGE, IMAGE, TransformersRuntime

from kaito_core.plugins import Plan, PodResources, WeightFile


def _plan(**overrides: object) -> Plan:
    values: dict = {
        "workspace": "ws-tiny", "namespace": "default", "preset": "tiny-llama", "runtime": "transformers",
        "runtime_reason": "safetensors", "weights_format": "safetensors", "quantization": "bf16",
        "files": (WeightFile("model.safetensors", 1_000_000),), "context_length": 256, "node_count": 1,
        "gpus_per_node": 0, "resources": PodResources(cpu="2", memory="2Gi"), "image": IMAGE,
    }  # fmt: skip
    values.update(overrides)
    return Plan(**values)


def test_serving_names_the_cpu_build_without_gpus_and_the_cuda_build_with_them() -> None:
    runtime = TransformersRuntime()
    assert runtime.container(_plan())["image"] == CPU_IMAGE == "kaito-runtime-transformers-cpu"
    gpu = _plan(gpus_per_node=1, resources=PodResources(gpu="1"))
    assert runtime.container(gpu)["image"] == IMAGE
    own = _plan(image="registry.example/my-transformers:2")
    assert runtime.container(own)["image"] == "registry.example/my-transformers:2"  # presetOptions.image


def test_the_trainer_image_follows_the_presets_gpus() -> None:
    runtime = TransformersRuntime()
    assert runtime.trainer_image(1) == IMAGE
    assert runtime.trainer_image(0) == CPU_IMAGE
