"""The llama.cpp Runtime object: its container for a Plan, its overhead, and its Engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kaito_core.plugins import ADAPTER_DIR, MiB

if TYPE_CHECKING:
    from kaito_core.plugins import Engine, EngineConfig, Plan

#: The images `plugins/runtime-llamacpp/Dockerfile.cuda` and `Dockerfile.cpu` build (llama-cpp-python
#: with CUDA, and its CPU build): bare names, which the operator resolves against its image registry.
IMAGE = "kaito-runtime-llamacpp"
CPU_IMAGE = "kaito-runtime-llamacpp-cpu"
#: Sequences decoded together unless the inference ConfigMap sets `max_batch`.
DEFAULT_MAX_BATCH = 8
#: Beside weights and KV cache: llama.cpp's compute buffer (sized for one n_batch=512 micro-batch,
#: dominated by the output logits, 512 x n_vocab floats: 512 MiB for Gemma 3's 262k vocabulary),
#: thread scratch, and on a GPU the CUDA context (~300 MiB). A bound from the load logs, not a guess
#: per token: the compute buffer does not grow with the context length.
OVERHEAD_BYTES = 1024 * MiB
#: Environment variable carrying an inline chat template into `kaito serve`.
CHAT_TEMPLATE_ENV = "KAITO_SERVE_CHAT_TEMPLATE"


class LlamaCppRuntime:
    """GGUF models through llama-cpp-python, with continuous batching (see docs/serving.md)."""

    name = "llamacpp"
    formats: tuple[str, ...] = ("gguf",)
    needs_gpu = False
    image = IMAGE

    def overhead_bytes(self, plan_context_length: int) -> int:
        return OVERHEAD_BYTES

    def max_batch(self, plan: Plan) -> int:
        value = plan.runtime_options.get(
            "max_batch", plan.runtime_options.get("max-batch", DEFAULT_MAX_BATCH)
        )
        try:
            batch = int(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"runtime option max_batch must be an integer, got {value!r}") from exc
        if batch < 1:
            raise ValueError(f"runtime option max_batch must be at least 1, got {batch}")
        return batch

    def serve_args(self, plan: Plan) -> list[str]:
        """`kaito serve` arguments for the Plan (also what `kaito run` starts locally)."""
        argv = [
            "serve",
            "--runtime", self.name,
            "--model", plan.model_dir,
            "--served-model-name", plan.served_model_name or plan.preset,
            "--host", "0.0.0.0",  # noqa: S104 - a pod serves its Service
            "--port", str(plan.port),
            "--n-gpu-layers", str(plan.n_gpu_layers),
            "--max-batch", str(self.max_batch(plan)),
        ]  # fmt: skip
        if plan.context_length:
            argv += ["--context-length", str(plan.context_length)]
        if plan.threads:
            argv += ["--threads", str(plan.threads)]
        for adapter in plan.adapters:
            # a PEFT directory (converted to a GGUF LoRA at start) or a GGUF LoRA, applied at its strength
            argv += ["--adapter", f"{adapter.name}={ADAPTER_DIR}/{adapter.name}"]
            if adapter.strength != 1.0:
                argv += ["--engine-option", f"strength.{adapter.name}={adapter.strength:g}"]
        return argv

    def container(self, plan: Plan) -> dict[str, Any]:
        argv = self.serve_args(plan)
        env: list[dict[str, Any]] = []
        if plan.chat_template:
            env.append({"name": CHAT_TEMPLATE_ENV, "value": plan.chat_template})
        probe_path = {"path": "/health", "port": plan.port}
        return {
            "name": plan.workspace or "inference",
            "image": self.image_for(plan),
            "command": ["kaito"],
            "args": argv,
            "env": env,
            "ports": [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}],
            "resources": _resources(plan),
            # /health is 200 only after a real generation; startup allows 10 minutes of loading.
            "startupProbe": {"httpGet": probe_path, "periodSeconds": 5, "failureThreshold": 120},
            "readinessProbe": {"httpGet": probe_path, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {"httpGet": probe_path, "periodSeconds": 10, "failureThreshold": 6},
        }

    def image_for(self, plan: Plan) -> str:
        """A Workspace's own image, else the CUDA build on GPU nodes and the CPU build elsewhere (the
        planner fills ``plan.image`` with this runtime's default name when the Workspace names none)."""
        if plan.image and plan.image != self.image:
            return plan.image
        return self.image if plan.gpus_per_node and plan.n_gpu_layers != 0 else CPU_IMAGE

    def engine(self, config: EngineConfig) -> Engine:
        from kaito_runtime_llamacpp.engine import LlamaCppEngine

        return LlamaCppEngine(config)

    def preload_imports(self) -> None:
        """Import the engine and llama-cpp-python (libllama through ctypes) ahead of time.

        Optional runtime hook: `kaito run` calls it in the server process it starts early, while it
        still validates and plans, so that import is off the path to the ready line.
        """
        import llama_cpp  # noqa: F401

        import kaito_runtime_llamacpp.engine  # noqa: F401


def _resources(plan: Plan) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    gpus = plan.resources.gpu or plan.gpus_per_node
    if gpus and plan.n_gpu_layers != 0:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(gpus)
    if plan.resources.cpu:
        requests["cpu"] = plan.resources.cpu
    if plan.resources.memory:
        requests["memory"] = limits["memory"] = plan.resources.memory
    return {"limits": limits, "requests": requests}
