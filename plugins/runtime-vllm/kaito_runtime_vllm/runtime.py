"""The vLLM Runtime object: its container for a Plan, its overhead, and its Engine."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

from kaito_core.plugins import ADAPTER_DIR, GiB, PlanError
from kaito_runtime_vllm.args import VllmSettings, normalize_key, server_args
from kaito_runtime_vllm.options import OPTIONS_ENV

if TYPE_CHECKING:
    from kaito_core.plugins import Engine, EngineConfig, Plan

#: The image `plugins/runtime-vllm/Dockerfile` builds (vLLM's OpenAI server image plus kaito): a bare
#: name, which the operator resolves against its image registry and tag.
IMAGE = "kaito-runtime-vllm"
#: Memory beside weights and KV cache: CUDA context, cuBLAS/NCCL workspaces, CUDA graphs and the
#: activation peak of a prefill chunk. KAITO's estimator reserves 2.3 GiB per GPU; vLLM V1 bounds the
#: activation peak by max-num-batched-tokens (chunked prefill), not by the context length, so the
#: reserve does not grow with it.
OVERHEAD_BYTES = int(2.3 * GiB)
#: Ray's GCS port on the leader pod of a multi-node (pipeline-parallel) Workspace.
RAY_PORT = 6379
#: The Ray node manager port of a worker pod: fixed, so its probes have a port to check.
RAY_WORKER_PORT = 6380
#: Seconds between the leader's checks that every node has joined its Ray cluster.
JOIN_POLL_S = 5


def plan_settings(plan: Plan) -> VllmSettings:
    """The vLLM settings a Plan decides, with the inference ConfigMap's extras."""
    weighted = [a.name for a in plan.adapters if a.strength != 1.0]
    if weighted:
        # KAITO's refusal: vLLM applies a LoRA adapter as trained, per request, never scaled
        raise PlanError(
            f"vLLM does not support adapter strength (adapter {weighted[0]}); remove "
            "inference.adapters[].strength "
            "or use the transformers runtime (annotation kaito.sh/runtime: transformers)"
        )
    return VllmSettings(
        model=plan.model_dir,
        served_model_name=plan.served_model_name or plan.preset,
        max_model_len=plan.context_length,
        tensor_parallel=plan.tensor_parallel,
        pipeline_parallel=plan.pipeline_parallel,
        gpu_memory_utilization=plan.gpu_memory_utilization,
        dtype=plan.dtype,
        download_dir=plan.model_dir,
        adapters={a.name: f"{ADAPTER_DIR}/{a.name}" for a in plan.adapters},
        extra=dict(plan.runtime_options),
        multi_node=plan.node_count > 1,
    )


def engine_options(plan: Plan, settings: VllmSettings) -> dict[str, Any]:
    """What `kaito serve` has no flag for, as the JSON of env KAITO_VLLM_OPTIONS (``settings_from``
    reads it back; model, name, context length and adapters travel as `kaito serve` flags)."""
    options: dict[str, Any] = {
        "tensor_parallel": settings.tensor_parallel,
        "pipeline_parallel": settings.pipeline_parallel,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "dtype": settings.dtype,
        "download_dir": settings.download_dir,
        "multi_node": settings.multi_node,
        "vllm": dict(settings.extra),
    }
    if plan.chat_template:
        options["chat_template"] = plan.chat_template
    return options


#: Sequences vLLM batches by default (its --max-num-seqs); `kaito serve` admits as many at once.
DEFAULT_MAX_NUM_SEQS = 256


class VllmRuntime:
    """vLLM's OpenAI server behind `kaito serve` (see docs/vllm.md for why not a pass-through)."""

    name = "vllm"
    formats: tuple[str, ...] = ("safetensors",)
    needs_gpu = True
    image = IMAGE

    def overhead_bytes(self, plan_context_length: int) -> int:
        return OVERHEAD_BYTES

    def supports_architecture(self, architecture: str) -> bool:
        """Whether vLLM serves a Hugging Face model of this ``config.json`` architecture (the planner
        asks for models named by repository id)."""
        from kaito_runtime_vllm.architectures import ARCHITECTURES

        return architecture in ARCHITECTURES

    def serve_args(self, plan: Plan) -> list[str]:
        """`kaito serve` arguments of the pod (the vLLM specifics travel in KAITO_VLLM_OPTIONS)."""
        settings = plan_settings(plan)
        extra = {normalize_key(str(k)): v for k, v in settings.extra.items()}
        max_seqs = extra.get("max-num-seqs", DEFAULT_MAX_NUM_SEQS)
        argv = [
            "serve",
            "--runtime", self.name,
            "--model", plan.model_dir,
            "--served-model-name", settings.served_model_name,
            "--host", "0.0.0.0",  # noqa: S104 - a pod serves its Service
            "--port", str(plan.port),
            "--max-batch", str(max_seqs),
        ]  # fmt: skip
        if plan.context_length:
            argv += ["--context-length", str(plan.context_length)]
        for name, path in settings.adapters.items():
            argv += ["--adapter", f"{name}={path}"]
        return argv

    def vllm_command(self, plan: Plan) -> list[str]:
        """The vLLM command the Engine starts for this Plan (shown by docs and tests; host/port internal)."""
        return ["python3", "-m", "vllm.entrypoints.openai.api_server", *server_args(plan_settings(plan))]

    def container(self, plan: Plan) -> dict[str, Any]:
        settings = plan_settings(plan)
        server_args(settings)  # refuse bad ConfigMap extras now, not in a crash-looping pod
        env: list[dict[str, Any]] = [
            {"name": OPTIONS_ENV, "value": json.dumps(engine_options(plan, settings))},
            # The weights are pulled before the runtime starts; vLLM must never reach for a hub.
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
        ]
        if plan.model_access_secret:
            env.append(
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": plan.model_access_secret, "key": "HF_TOKEN"}},
                }
            )
        ports: list[dict[str, Any]] = [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}]
        serve = ["kaito", *self.serve_args(plan)]
        if settings.multi_node:
            ports.append({"name": "ray", "containerPort": RAY_PORT, "protocol": "TCP"})
            command = ["/bin/bash", "-c"]
            args = [self._leader_script(plan, serve)]
        else:
            command, args = serve[:1], serve[1:]
        container: dict[str, Any] = {
            "name": plan.workspace or "inference",
            "image": plan.image or self.image,
            "command": command,
            "args": args,
            "env": env,
            "ports": ports,
            "resources": _resources(plan),
        }
        return container

    def worker_container(self, plan: Plan) -> dict[str, Any]:
        """A worker pod of a multi-node Plan: joins the leader's Ray cluster and serves no HTTP; its
        probes check its own Ray node manager port (open once it has joined, closed when Ray stops)."""
        leader = f"{plan.workspace}-0.{plan.workspace}-headless.{plan.namespace}.svc.cluster.local"
        ray = {"tcpSocket": {"port": RAY_WORKER_PORT}}
        leader_container = self.container(plan)
        return {
            "name": f"{plan.workspace or 'inference'}-worker",
            "image": plan.image or self.image,
            "command": ["ray"],
            "args": [
                "start",
                "--block",
                f"--address={leader}:{RAY_PORT}",
                f"--num-gpus={plan.gpus_per_node}",
                f"--node-manager-port={RAY_WORKER_PORT}",
            ],
            "env": [e for e in leader_container["env"] if e["name"] != OPTIONS_ENV],
            "ports": [{"name": "ray-node", "containerPort": RAY_WORKER_PORT, "protocol": "TCP"}],
            "resources": _resources(plan),
            "startupProbe": {**ray, "periodSeconds": 10},
            "readinessProbe": {**ray, "periodSeconds": 10, "failureThreshold": 3},
            "livenessProbe": {**ray, "periodSeconds": 10, "failureThreshold": 6},
        }

    def _leader_script(self, plan: Plan, serve: list[str]) -> str:
        """Pod 0 is the Ray head; it starts `kaito serve` once every node has joined (so its /health,
        the leader's readiness, turns 200 only with all workers in): vLLM places its pipeline stages
        through Ray on the workers' GPUs."""
        count = (
            "import ray; ray.init(address='auto', logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        return "\n".join([
            "set -euo pipefail",
            f"ray start --head --port={RAY_PORT} --num-gpus={plan.gpus_per_node}",
            f'until [ "$(python3 -c {shlex.quote(count)} 2>/dev/null || echo 0)" -ge {plan.node_count} ]; do',
            f'  echo "waiting for {plan.node_count} Ray nodes"; sleep {JOIN_POLL_S}',
            "done",
            f"exec {shlex.join(serve)}",
        ])

    def engine(self, config: EngineConfig) -> Engine:
        from kaito_runtime_vllm.engine import VllmEngine

        return VllmEngine(config)


def _resources(plan: Plan) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    gpus = plan.resources.gpu or plan.gpus_per_node
    if gpus:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(gpus)
    if plan.resources.cpu:
        requests["cpu"] = plan.resources.cpu
    if plan.resources.memory:
        requests["memory"] = plan.resources.memory
    return {"limits": limits, "requests": requests}
