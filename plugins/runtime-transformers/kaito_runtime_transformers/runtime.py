"""The transformers Runtime object: its container for a Plan, its overhead, and its Engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kaito_core.plugins import ADAPTER_DIR, MiB, PlanError

if TYPE_CHECKING:
    from kaito_core.plugins import Engine, EngineConfig, Plan

#: The images `plugins/runtime-transformers/Dockerfile.cuda` and `Dockerfile.cpu` build (torch,
#: transformers, peft, trl, kaito): GPU nodes get the first, CPU-only nodes the second.
IMAGE = "kaito-runtime-transformers"
CPU_IMAGE = "kaito-runtime-transformers-cpu"
#: Beside the weights: activations of one sequence and, on a GPU, the CUDA context (~500 MiB).
OVERHEAD_BYTES = 1024 * MiB


class TransformersRuntime:
    """Hugging Face safetensors models with transformers, peft adapters at their strength."""

    name = "transformers"
    formats: tuple[str, ...] = ("safetensors",)
    needs_gpu = False
    image = IMAGE

    def overhead_bytes(self, plan_context_length: int) -> int:
        return OVERHEAD_BYTES

    def serve_args(self, plan: Plan) -> list[str]:
        if plan.node_count > 1:
            # KAITO's message for the same refusal
            raise PlanError(
                "Multi-node distributed inference is not supported with Huggingface Transformers runtime"
            )
        argv = [
            "serve",
            "--runtime", self.name,
            "--model", plan.model_dir,
            "--served-model-name", plan.served_model_name or plan.preset,
            "--host", "0.0.0.0",  # noqa: S104 - a pod serves its Service
            "--port", str(plan.port),
            "--max-batch", "1",  # one sequence at a time (engine.py); the server queues the rest
        ]  # fmt: skip
        if plan.context_length:
            argv += ["--context-length", str(plan.context_length)]
        for adapter in plan.adapters:
            argv += ["--adapter", f"{adapter.name}={ADAPTER_DIR}/{adapter.name}",
                     "--engine-option", f"strength.{adapter.name}={adapter.strength}"]  # fmt: skip
        return argv

    def container(self, plan: Plan) -> dict[str, Any]:
        probe = {"path": "/health", "port": plan.port}
        limits: dict[str, str] = {}
        requests: dict[str, str] = {}
        gpus = plan.resources.gpu or plan.gpus_per_node
        if gpus:
            limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(gpus)
        if plan.resources.cpu:
            requests["cpu"] = plan.resources.cpu
        if plan.resources.memory:
            requests["memory"] = limits["memory"] = plan.resources.memory
        return {
            "name": plan.workspace or "inference",
            "image": self.image_for(plan),
            "command": ["kaito"],
            "args": self.serve_args(plan),
            "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],  # weights come from the init container
            "ports": [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}],
            "resources": {"limits": limits, "requests": requests},
            "startupProbe": {"httpGet": probe, "periodSeconds": 5, "failureThreshold": 360},
            "readinessProbe": {"httpGet": probe, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {"httpGet": probe, "periodSeconds": 10, "failureThreshold": 6},
        }

    def image_for(self, plan: Plan) -> str:
        """A Workspace's own image, else the CUDA build on GPU nodes and the CPU build elsewhere."""
        if plan.image and plan.image != self.image:
            return plan.image
        return self.image if plan.gpus_per_node or plan.resources.gpu else CPU_IMAGE

    def trainer_image(self, gpu_count: int) -> str:
        """The tuning Job's trainer image: the CUDA build when the preset needs GPUs, else the CPU one."""
        return self.image if gpu_count else CPU_IMAGE

    def engine(self, config: EngineConfig) -> Engine:
        from kaito_runtime_transformers.engine import TransformersEngine

        return TransformersEngine(config)
