"""vLLM's OpenAI-server arguments: what the Plan decides, plus the inference ConfigMap's extras.

Pure functions (no I/O): the container builder and the Engine both call :func:`server_args`, so the
command a pod runs and the command ``kaito serve --runtime vllm`` starts locally are the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaito_core.plugins import PlanError

#: Flags the Plan (or the serving wrapper) decides. An extra naming one of them is refused: silently
#: letting the ConfigMap override e.g. the tensor-parallel size would break the GPU fit the planner
#: computed, and host/port belong to the wrapper that health-checks the child process.
RESERVED: Mapping[str, str] = {
    "model": "the model path is where the weights are pulled to (the Plan's model_dir)",
    "served-model-name": "the served model name is the Workspace's preset (Plan.served_model_name)",
    "max-model-len": "set the context length through the planner (max-model-len in the inference "
    "ConfigMap is read by the planner, which checks it against the model's window)",
    "gpu-memory-utilization": "the planner sizes the GPUs with it (Plan.gpu_memory_utilization)",
    "tensor-parallel-size": "the planner decides the GPU split (Plan.tensor_parallel)",
    "pipeline-parallel-size": "the planner decides the node split (Plan.pipeline_parallel)",
    "dtype": "the planner decides the dtype (Plan.dtype)",
    "download-dir": "weights are pulled to the Plan's model_dir",
    "enable-lora": "adapters come from the Workspace's inference.adapters",
    "lora-modules": "adapters come from the Workspace's inference.adapters",
    "max-loras": "set from the number of the Workspace's inference.adapters",
    "host": "kaito serve owns the listening address",
    "port": "kaito serve owns the listening port",
    "api-key": "set the API key on kaito serve (it guards every endpoint)",
    "distributed-executor-backend": "multi-node serving decides the executor (ray)",
    "data-parallel-size": "the planner decides the GPU split",
}

#: Option keys that let the model run code from its repository. Only an explicit boolean ``true``
#: under ``trust-remote-code`` enables it; anything else naming it is refused.
TRUST_REMOTE_CODE = "trust-remote-code"

_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")

#: The Plan's dtype spellings -> vLLM's ``--dtype`` choices.
DTYPES: Mapping[str, str] = {
    "auto": "auto",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


class VllmOptionError(PlanError):
    """An inference-ConfigMap extra that cannot be passed to vLLM; the message names key and fix.

    A PlanError (a ValueError), so the operator reports it on the Workspace (ManifestFailed) and
    `kaito plan` prints it, like any other reason a Workspace cannot be planned.
    """


def normalize_key(key: str) -> str:
    """``--Max_Num_Seqs`` -> ``max-num-seqs`` (vLLM accepts both spellings; compare one)."""
    return key.strip().lstrip("-").replace("_", "-").lower()


def option_args(options: Mapping[str, Any]) -> list[str]:
    """The extras as vLLM flags, in the order given.

    Scalars become ``--key value``; ``true`` a bare ``--key`` flag; ``false`` ``--no-key`` (vLLM's
    boolean options are ``BooleanOptionalAction`` since 0.10); a list ``--key v1 v2``; a mapping a
    JSON string (``--hf-overrides '{...}'``). ``null`` is refused rather than guessed.
    """
    argv: list[str] = []
    for raw_key, value in options.items():
        key = normalize_key(str(raw_key))
        where = f"inference ConfigMap vllm option {raw_key!r}"
        if not _KEY.match(key):
            raise VllmOptionError(f"{where}: not a vLLM flag name (use letters, digits and dashes)")
        if key in RESERVED:
            raise VllmOptionError(f"{where} is decided by kaito and cannot be overridden: {RESERVED[key]}")
        if key == TRUST_REMOTE_CODE or key == "no-" + TRUST_REMOTE_CODE:
            if key == TRUST_REMOTE_CODE and value is True:
                argv.append("--" + TRUST_REMOTE_CODE)
                continue
            if value is False or key == "no-" + TRUST_REMOTE_CODE:
                continue  # off is the default
            raise VllmOptionError(
                f"{where}={value!r}: remote code runs only when asked for explicitly; "
                f"write `{TRUST_REMOTE_CODE}: true` (a YAML boolean) or remove the key"
            )
        if value is None:
            raise VllmOptionError(f"{where} has no value; give one, or remove the key to keep vLLM's default")
        if isinstance(value, bool):
            argv.append(f"--{key}" if value else f"--no-{key}")
        elif isinstance(value, str | int | float):
            text = str(value)
            if "\n" in text or "\0" in text:
                raise VllmOptionError(f"{where}: the value must be on one line")
            argv += [f"--{key}", text]
        elif isinstance(value, Sequence):
            if not value:
                raise VllmOptionError(f"{where} is an empty list; remove the key instead")
            argv += [f"--{key}", *(str(v) for v in value)]
        elif isinstance(value, Mapping):
            argv += [f"--{key}", json.dumps(value, sort_keys=True)]
        else:
            raise VllmOptionError(f"{where}: unsupported value type {type(value).__name__}")
    return argv


@dataclass(frozen=True)
class VllmSettings:
    """Everything vLLM's server is started with (besides host and port)."""

    model: str
    served_model_name: str
    max_model_len: int = 0  # 0: the model's own
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    gpu_memory_utilization: float = 0.84
    dtype: str = "auto"  # a key of DTYPES
    download_dir: str = ""
    adapters: Mapping[str, str] = field(default_factory=dict)  # name -> directory
    extra: Mapping[str, Any] = field(default_factory=dict)  # the ConfigMap's vllm section
    multi_node: bool = False  # pipeline parallel over several pods: ray executor

    def validate(self) -> None:
        if not self.served_model_name:
            raise VllmOptionError("served model name is empty; set Plan.served_model_name or the preset name")
        if self.tensor_parallel < 1 or self.pipeline_parallel < 1:
            raise VllmOptionError(
                f"tensor/pipeline parallel sizes must be >= 1 (got {self.tensor_parallel}/"
                f"{self.pipeline_parallel})"
            )
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise VllmOptionError(
                f"gpu_memory_utilization must be in (0, 1] (got {self.gpu_memory_utilization})"
            )
        if self.dtype not in DTYPES:
            raise VllmOptionError(f"dtype {self.dtype!r} is not one vLLM knows; use one of {sorted(DTYPES)}")
        for name in self.adapters:
            if not _KEY.match(name.lower()) or "=" in name:
                raise VllmOptionError(
                    f"adapter name {name!r}: use a DNS-1123 label (letters, digits, dashes)"
                )


def server_args(settings: VllmSettings) -> list[str]:
    """Arguments after ``python -m vllm.entrypoints.openai.api_server`` (host/port added by the caller)."""
    settings.validate()
    argv = [
        "--model", settings.model,
        "--served-model-name", settings.served_model_name,
        "--gpu-memory-utilization", f"{settings.gpu_memory_utilization:g}",
        "--tensor-parallel-size", str(settings.tensor_parallel),
        "--pipeline-parallel-size", str(settings.pipeline_parallel),
        "--dtype", DTYPES[settings.dtype],
    ]  # fmt: skip
    if settings.max_model_len:
        argv += ["--max-model-len", str(settings.max_model_len)]
    if settings.download_dir:
        argv += ["--download-dir", settings.download_dir]
    if settings.multi_node:
        argv += ["--distributed-executor-backend", "ray"]
    if settings.adapters:
        argv += ["--enable-lora", "--max-loras", str(len(settings.adapters)), "--lora-modules"]
        argv += [f"{name}={path}" for name, path in settings.adapters.items()]
    argv += option_args(settings.extra)
    return argv
