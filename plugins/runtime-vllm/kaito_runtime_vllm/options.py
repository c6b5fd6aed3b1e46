"""How `kaito serve --runtime vllm` learns the vLLM settings: EngineConfig plus KAITO_VLLM_OPTIONS.

In a pod the Runtime's container puts the Plan's vLLM decisions (parallelism, GPU memory share, dtype,
adapters, ConfigMap extras) into the environment variable as JSON; ``EngineConfig.options`` entries
(from `kaito serve`, or a test) win over it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaito_core.plugins import EngineConfig
from kaito_runtime_vllm.args import VllmOptionError, VllmSettings

OPTIONS_ENV = "KAITO_VLLM_OPTIONS"
#: Seconds vLLM gets to load the weights, compile and capture CUDA graphs before load() fails.
DEFAULT_STARTUP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class EngineOptions:
    """What the Engine itself needs beyond the vLLM settings."""

    #: Command that starts an OpenAI-compatible server; ``{host}`` and ``{port}`` are substituted.
    #: None: vLLM's own server with the settings' arguments.
    upstream_command: tuple[str, ...] | None = None
    #: Base URL of an already-running server to use instead of starting one (no child process).
    upstream_url: str | None = None
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    #: Seconds between /health polls of vLLM once it serves.
    health_interval: float = 5.0
    #: The adapter requests go to (the only one when there is exactly one); None: the base model.
    adapter: str | None = None
    #: The preset's chat template (overridden by `kaito serve --chat-template-file`).
    chat_template: str | None = None


def merged_options(config: EngineConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    raw = env.get(OPTIONS_ENV)
    if raw:
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise VllmOptionError(f"{OPTIONS_ENV} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise VllmOptionError(f"{OPTIONS_ENV} must be a JSON object")
        merged.update(loaded)
    merged.update(config.options)
    return merged


def settings_from(config: EngineConfig, environ: Mapping[str, str] | None = None) -> VllmSettings:
    opts = merged_options(config, environ)
    adapters = dict(opts.get("adapters") or {})
    adapters.update(config.adapters)
    extra = opts.get("vllm") or {}
    if not isinstance(extra, Mapping):
        raise VllmOptionError("option 'vllm' (the ConfigMap's vLLM extras) must be a mapping")
    try:
        return VllmSettings(
            model=config.model_path,
            served_model_name=config.served_model_name,
            max_model_len=int(config.context_length or opts.get("max_model_len") or 0),
            tensor_parallel=int(opts.get("tensor_parallel", 1)),
            pipeline_parallel=int(opts.get("pipeline_parallel", 1)),
            gpu_memory_utilization=float(opts.get("gpu_memory_utilization", 0.84)),
            dtype=str(opts.get("dtype", "auto")),
            download_dir=str(opts.get("download_dir", "")),
            adapters=adapters,
            extra=dict(extra),
            multi_node=bool(opts.get("multi_node", False)),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, VllmOptionError):
            raise
        raise VllmOptionError(f"vLLM engine options: {exc}") from exc


def engine_options_from(config: EngineConfig, environ: Mapping[str, str] | None = None) -> EngineOptions:
    opts = merged_options(config, environ)
    command = opts.get("upstream_command")
    if command is not None and (
        isinstance(command, str) or not all(isinstance(part, str) for part in command)
    ):
        raise VllmOptionError("option 'upstream_command' must be a list of strings (argv, no shell)")
    adapter = opts.get("adapter")
    adapters = {**(opts.get("adapters") or {}), **config.adapters}
    if adapter is None and len(adapters) == 1:
        adapter = next(iter(adapters))
    if adapter is not None and adapter not in adapters:
        raise VllmOptionError(f"option 'adapter': {adapter!r} is not one of the adapters {sorted(adapters)}")
    return EngineOptions(
        upstream_command=tuple(command) if command is not None else None,
        upstream_url=opts.get("upstream_url"),
        startup_timeout=float(opts.get("startup_timeout", DEFAULT_STARTUP_TIMEOUT)),
        health_interval=float(opts.get("health_interval", 5.0)),
        adapter=adapter,
        chat_template=opts.get("chat_template"),
    )
