"""The vLLM container and command generated from Plans (table-driven), and refused ConfigMap extras."""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest
from kaito_runtime_vllm import OVERHEAD_BYTES, VllmOptionError, VllmRuntime, option_args, server_args
from kaito_runtime_vllm.options import OPTIONS_ENV, settings_from

from kaito_core.plugins import (
    AdapterPlan,
    EngineConfig,
    GiB,
    Plan,
    PlanError,
    PodResources,
    Runtime,
    WeightFile,
)

BASE = Plan(
    workspace="ws-phi3",
    namespace="default",
    preset="phi-3-mini-4k-instruct",
    runtime="vllm",
    runtime_reason="the preset's default",
    weights_format="safetensors",
    quantization="bf16",
    files=(WeightFile("model-00001-of-00002.safetensors", 4 * GiB),),
    context_length=4096,
    node_count=1,
    gpus_per_node=1,
    resources=PodResources(gpu=1),
)


def flag(argv: list[str], name: str) -> str | None:
    """The value after --name, or None when absent."""
    return argv[argv.index(name) + 1] if name in argv else None


CASES: list[tuple[str, Plan, dict[str, Any]]] = [
    ("one GPU", BASE, {
        "--tensor-parallel-size": "1", "--pipeline-parallel-size": "1", "--gpu-memory-utilization": "0.84",
        "--max-model-len": "4096", "--dtype": "bfloat16", "--served-model-name": "phi-3-mini-4k-instruct",
        "--model": "/workspace/weights", "--download-dir": "/workspace/weights", "gpus": "1",
    }),
    ("TP=4 on A10 (0.82)", replace(BASE, gpus_per_node=4, tensor_parallel=4, gpu_memory_utilization=0.82,
                                  resources=PodResources(gpu=4), dtype="fp16", served_model_name="phi3"), {
        "--tensor-parallel-size": "4", "--gpu-memory-utilization": "0.82", "--dtype": "float16",
        "--served-model-name": "phi3", "gpus": "4",
    }),
    ("multi-node pipeline parallel", replace(BASE, node_count=2, gpus_per_node=2, tensor_parallel=2,
                                             pipeline_parallel=2, resources=PodResources(gpu=2)), {
        "--tensor-parallel-size": "2", "--pipeline-parallel-size": "2",
        "--distributed-executor-backend": "ray", "gpus": "2",
    }),
    ("adapters", replace(BASE, adapters=(AdapterPlan("fr", "reg/fr:1"), AdapterPlan("de", "reg/de:1"))), {
        "--enable-lora": None, "--max-loras": "2", "--lora-modules": "fr=/mnt/adapter/fr",
    }),
    ("ConfigMap extras", replace(BASE, runtime_options={
        "max-num-seqs": 64, "enforce_eager": True, "enable-prefix-caching": False, "swap-space": 4,
        "hf-overrides": {"rope_scaling": {"type": "linear"}}, "trust-remote-code": True,
    }), {
        "--max-num-seqs": "64", "--enforce-eager": None, "--no-enable-prefix-caching": None,
        "--swap-space": "4", "--hf-overrides": '{"rope_scaling": {"type": "linear"}}',
        "--trust-remote-code": None,
    }),
]


@pytest.mark.parametrize(("label", "plan", "expected"), CASES, ids=[c[0] for c in CASES])
def test_generated_command(label: str, plan: Plan, expected: dict[str, Any]) -> None:
    runtime = VllmRuntime()
    command = runtime.vllm_command(plan)
    assert command[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    argv = command[3:]
    for name, value in expected.items():
        if name == "gpus":
            continue
        assert name in argv, f"{label}: {name} missing from {argv}"
        if value is not None:
            assert flag(argv, name) == value, f"{label}: {name}"
    if "--trust-remote-code" not in expected:
        assert "--trust-remote-code" not in argv  # never by default
    if not plan.adapters:
        assert "--enable-lora" not in argv and "--lora-modules" not in argv
    else:
        start = argv.index("--lora-modules") + 1
        modules = [f"{a.name}=/mnt/adapter/{a.name}" for a in plan.adapters]
        assert argv[start:start + len(plan.adapters)] == modules
    if plan.node_count == 1:
        assert "--distributed-executor-backend" not in argv

    container = runtime.container(plan)
    assert container["image"] == "kaito-runtime-vllm"  # a bare name: the operator resolves it
    assert container["ports"][0] == {"name": "http", "containerPort": 5000, "protocol": "TCP"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == expected.get("gpus", "1")
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert "HF_TOKEN" not in env

    # The pod's `kaito serve` + KAITO_VLLM_OPTIONS lead the Engine to exactly the same vLLM arguments.
    if plan.node_count == 1:
        assert container["command"] == ["kaito"]
        serve = container["args"]
    else:
        assert container["command"] == ["/bin/bash", "-c"]
        script = container["args"][0]
        leader_line = next(line for line in script.splitlines() if "exec kaito serve" in line)
        serve = shlex.split(leader_line.strip())[2:]
        assert "ray start --head --port=6379 --num-gpus=2" in script
        # the leader serves only once every node has joined its Ray cluster
        assert f"-ge {plan.node_count} ]" in script.split("exec kaito serve")[0]
        assert {"name": "ray", "containerPort": 6379, "protocol": "TCP"} in container["ports"]
        worker = runtime.worker_container(plan)
        assert worker["command"] == ["ray"]
        assert "--address=ws-phi3-0.ws-phi3-headless.default.svc.cluster.local:6379" in worker["args"]
        assert "--node-manager-port=6380" in worker["args"] and "--block" in worker["args"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert worker[probe]["tcpSocket"] == {"port": 6380}  # its own Ray port, not the leader's HTTP
        assert worker["ports"] == [{"name": "ray-node", "containerPort": 6380, "protocol": "TCP"}]
        assert OPTIONS_ENV not in {e["name"] for e in worker["env"]}
    assert serve[:3] == ["serve", "--runtime", "vllm"]
    config = EngineConfig(
        model_path=flag(serve, "--model") or "",
        served_model_name=flag(serve, "--served-model-name") or "",
        context_length=int(flag(serve, "--context-length") or 0),
        adapters=dict(v.split("=", 1) for k, v in itertools.pairwise(serve) if k == "--adapter"),
    )
    settings = settings_from(config, environ={OPTIONS_ENV: env[OPTIONS_ENV]["value"]})
    assert server_args(settings) == argv


def test_container_is_a_valid_kubernetes_container() -> None:
    runtime = VllmRuntime()
    for _, plan, _ in CASES:
        container = runtime.container(replace(plan, model_access_secret="hf-secret"))
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [container]}}
        kubernetes_validate.validate(pod, "1.30.0", strict=True)
        env = {e["name"]: e for e in container["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-secret", "key": "HF_TOKEN"}


def test_max_batch_follows_max_num_seqs() -> None:
    runtime = VllmRuntime()
    assert flag(runtime.serve_args(BASE), "--max-batch") == "256"
    plan = replace(BASE, runtime_options={"max_num_seqs": 32})
    assert flag(runtime.serve_args(plan), "--max-batch") == "32"


@pytest.mark.parametrize(("options", "message"), [
    ({"tensor-parallel-size": 8}, "Plan.tensor_parallel"),
    ({"--max_model_len": 99999}, "max-model-len"),
    ({"gpu_memory_utilization": 0.95}, "gpu_memory_utilization"),
    ({"port": 8000}, "kaito serve owns the listening port"),
    ({"lora-modules": ["x=/tmp/x"]}, "inference.adapters"),
    ({"model": "/elsewhere"}, "model_dir"),
    ({"trust-remote-code": "yes"}, "trust-remote-code: true"),
    ({"trust_remote_code": 1}, "explicitly"),
    ({"max-num-seqs": None}, "has no value"),
    ({"bad key!": 1}, "not a vLLM flag name"),
    ({"served-model-name": "x"}, "served model name"),
    ({"swap-space": "4\n--trust-remote-code"}, "one line"),
], ids=lambda v: str(v)[:40])
def test_refused_extras_name_the_key(options: dict[str, Any], message: str) -> None:
    plan = replace(BASE, runtime_options=options)
    with pytest.raises(PlanError) as err:  # what the operator reports as ManifestFailed
        VllmRuntime().container(plan)
    assert isinstance(err.value, VllmOptionError)
    assert message in str(err.value)
    assert repr(next(iter(options))) in str(err.value)


def test_option_args_shapes() -> None:
    options = {"a": 1, "b": True, "c": False, "d": [1, 2], "e": {"k": 1}, "trust-remote-code": False}
    assert option_args(options) == ["--a", "1", "--b", "--no-c", "--d", "1", "2", "--e", '{"k": 1}']


def test_bad_plan_values_are_clear() -> None:
    with pytest.raises(VllmOptionError, match="dtype 'int4'"):
        VllmRuntime().container(replace(BASE, dtype="int4"))
    with pytest.raises(VllmOptionError, match="gpu_memory_utilization"):
        VllmRuntime().container(replace(BASE, gpu_memory_utilization=1.5))
    with pytest.raises(VllmOptionError, match=OPTIONS_ENV):
        config = EngineConfig(model_path="/m", served_model_name="m")
        settings_from(config, environ={OPTIONS_ENV: "{not json"})


def test_runtime_contract() -> None:
    runtime = VllmRuntime()
    assert isinstance(runtime, Runtime)
    assert (runtime.name, runtime.formats, runtime.needs_gpu) == ("vllm", ("safetensors",), True)
    assert runtime.overhead_bytes(4096) == runtime.overhead_bytes(131072) == OVERHEAD_BYTES
    assert 2.2 * GiB < OVERHEAD_BYTES < 2.4 * GiB  # KAITO's 2.3 GiB reserve


def test_registered_through_the_entry_point() -> None:
    from kaito_core.plugins import default_registry

    assert isinstance(default_registry().runtime("vllm"), VllmRuntime)


def test_env_json_is_stable() -> None:
    container = VllmRuntime().container(BASE)
    raw = next(e["value"] for e in container["env"] if e["name"] == OPTIONS_ENV)
    assert json.loads(raw)["gpu_memory_utilization"] == 0.84


def test_adapter_strength_is_refused_with_kaitos_message() -> None:
    from kaito_core.plugins import PlanError

    weighted = replace(BASE, adapters=(AdapterPlan("fr", "reg/fr:1", strength=0.5),))
    with pytest.raises(PlanError, match="vLLM does not support adapter strength"):
        VllmRuntime().container(weighted)
