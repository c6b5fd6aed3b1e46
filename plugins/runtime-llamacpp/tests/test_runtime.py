"""The Runtime object: discovery through the entry point, the container it builds for a Plan."""

from __future__ import annotations

import itertools

import kubernetes_validate
import pytest
from kaito_runtime_llamacpp.engine import LlamaCppEngine
from kaito_runtime_llamacpp.runtime import LlamaCppRuntime

from kaito_core.plugins import AdapterPlan, Plan, PodResources, Runtime, WeightFile, default_registry


def _plan(**overrides: object) -> Plan:
    values: dict = {
        "workspace": "ws-gemma",
        "namespace": "default",
        "preset": "gemma-3-270m",
        "runtime": "llamacpp",
        "runtime_reason": "GGUF on CPU",
        "weights_format": "gguf",
        "quantization": "Q4_K_M",
        "files": (WeightFile("gemma-3-270m-Q4_K_M.gguf", 253_113_024),),
        "context_length": 4096,
        "node_count": 1,
        "gpus_per_node": 0,
        "threads": 4,
        "resources": PodResources(cpu="4", memory="2Gi"),
        "chat_template": "{{ messages[0]['content'] }}",
        "adapters": (AdapterPlan(name="pirate", image="registry.example/adapter:1"),),
    }
    values.update(overrides)
    return Plan(**values)


def test_discovered_through_the_entry_point() -> None:
    runtime = default_registry().runtime("llamacpp")
    assert isinstance(runtime, Runtime) and isinstance(runtime, LlamaCppRuntime)
    assert runtime.formats == ("gguf",) and runtime.needs_gpu is False and runtime.image


def test_container_runs_kaito_serve_with_the_plans_settings() -> None:
    container = LlamaCppRuntime().container(_plan())
    argv = container["command"] + container["args"]
    assert argv[:5] == ["kaito", "serve", "--runtime", "llamacpp", "--model"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags["--model"] == "/workspace/weights" and flags["--port"] == "5000"
    assert (
        flags["--context-length"] == "4096" and flags["--threads"] == "4" and flags["--n-gpu-layers"] == "0"
    )
    assert flags["--served-model-name"] == "gemma-3-270m" and flags["--max-batch"] == "8"
    assert "pirate=/mnt/adapter/pirate" in argv
    assert {"name": "KAITO_SERVE_CHAT_TEMPLATE", "value": "{{ messages[0]['content'] }}"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 5000}
    assert container["resources"] == {"limits": {"memory": "2Gi"}, "requests": {"cpu": "4", "memory": "2Gi"}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ws-gemma-0"},
        "spec": {"containers": [container]},
    }
    kubernetes_validate.validate(pod, "1.30", strict=True)


def test_gpu_plan_offloads_layers_and_requests_gpus() -> None:
    plan = _plan(gpus_per_node=1, n_gpu_layers=-1, runtime_options={"max_batch": 16})
    container = LlamaCppRuntime().container(plan)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    args = container["args"]
    assert args[args.index("--n-gpu-layers") + 1] == "-1" and args[args.index("--max-batch") + 1] == "16"


def test_bad_max_batch_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_batch must be an integer"):
        LlamaCppRuntime().container(_plan(runtime_options={"max_batch": "lots"}))


def test_engine_factory_and_missing_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kaito_runtime_llamacpp.loading import EngineError, find_gguf

    from kaito_core.plugins import EngineConfig

    with pytest.raises(EngineError, match=r"no \.gguf file"):  # refused when the engine is made
        LlamaCppRuntime().engine(EngineConfig(model_path=str(tmp_path), served_model_name="x"))
    (tmp_path / "a.gguf").write_bytes(b"")
    engine = LlamaCppRuntime().engine(EngineConfig(model_path=str(tmp_path), served_model_name="x"))
    assert isinstance(engine, LlamaCppEngine)
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(EngineError, match="several GGUF files"):
        find_gguf(str(tmp_path))


def test_the_image_is_the_cpu_build_without_gpus_and_the_cuda_build_with_them() -> None:
    runtime = LlamaCppRuntime()
    cpu = _plan(image=runtime.image)  # the planner's default: the runtime's own image name
    gpu = _plan(image=runtime.image, gpus_per_node=1, n_gpu_layers=-1)
    assert runtime.container(cpu)["image"] == "kaito-runtime-llamacpp-cpu"
    assert runtime.container(gpu)["image"] == "kaito-runtime-llamacpp"
    own = _plan(image="registry.example/my-llama:2", gpus_per_node=1, n_gpu_layers=-1)
    assert runtime.container(own)["image"] == "registry.example/my-llama:2"  # presetOptions.image wins


def test_an_adapters_strength_reaches_kaito_serve() -> None:
    adapters = (
        AdapterPlan(name="pirate", image="r/a:1", strength=0.5),
        AdapterPlan(name="plain", image="r/b:1"),
    )
    argv = LlamaCppRuntime().serve_args(_plan(adapters=adapters))
    pairs = list(itertools.pairwise(argv))
    assert ("--adapter", "pirate=/mnt/adapter/pirate") in pairs
    assert ("--adapter", "plain=/mnt/adapter/plain") in pairs
    assert [b for a, b in pairs if a == "--engine-option"] == ["strength.pirate=0.5"]  # 1 is the default
