"""The runtime contract: an inference engine, as a container for a Plan and as an in-process Engine."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kaito_core.plugins.engine import Engine, EngineConfig
from kaito_core.plugins.plan import Plan


@runtime_checkable
class Runtime(Protocol):
    """An inference engine: how to build its container from a Plan and how to serve it in-process.

    ``name`` is what the ``kaito.sh/runtime`` annotation and presets' ``runtimes`` refer to.
    ``image`` is a full reference, or a bare name of an image the project builds (``nox -s images``),
    which the operator resolves against its image registry and tag.

    A runtime that serves a Plan over several nodes also has ``worker_container(plan)``: the container
    of the pods that join the leader (``container(plan)``) and serve no HTTP, with probes they can pass
    (e.g. a TCP probe on their own Ray port). A runtime without it is refused for multi-node Plans.

    The runtime that tunes (``transformers``, whose plugin ships ``kaito tune``) may have
    ``trainer_image(gpu_count)``: the tuning Job's image for a preset needing that many GPUs (a CPU
    build for none); without it the Job runs ``image``.
    """

    name: str
    formats: tuple[str, ...]  # weight formats it serves: ("gguf",) or ("safetensors",)
    needs_gpu: bool  # True when it cannot run on a CPU-only node
    image: str  # default container image

    def overhead_bytes(self, plan_context_length: int) -> int:
        """Memory the engine needs beside weights and KV cache (CUDA context, activations)."""
        ...

    def container(self, plan: Plan) -> dict[str, Any]:
        """The Kubernetes Container (a dict in API form) that serves the Plan.

        The model files are at ``plan.model_dir``; adapters under ``/mnt/adapter/<name>``.
        """
        ...

    def engine(self, config: EngineConfig) -> Engine:
        """An Engine for ``kaito serve`` (kaito_core.serving) over the model at config.model_path."""
        ...
