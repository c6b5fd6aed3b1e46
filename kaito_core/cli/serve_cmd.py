"""`kaito serve`: the inference server that runs in every inference pod and under `kaito run`."""

from __future__ import annotations

import os
from pathlib import Path

import click

ENV_PREFIX = "KAITO_SERVE"


def _env(name: str) -> str:
    return f"{ENV_PREFIX}_{name}"


def _read_keys(api_key_file: str | None) -> tuple[str, ...]:
    """Keys from the file (one per line) and/or KAITO_SERVE_API_KEY; never echoed anywhere."""
    keys: list[str] = []
    if api_key_file:
        try:
            text = Path(api_key_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read the API key file: {exc.strerror}", param_hint="--api-key-file"
            ) from None
        keys.extend(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
        if not keys:
            raise click.BadParameter("the API key file holds no key", param_hint="--api-key-file")
    env_key = os.environ.get(_env("API_KEY"), "").strip()
    if env_key:
        keys.append(env_key)
    return tuple(keys)


def _parse_adapters(values: tuple[str, ...]) -> dict[str, str]:
    adapters: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected NAME=PATH", param_hint="--adapter")
        adapters[name] = path
    return adapters


def _parse_engine_options(values: tuple[str, ...]) -> dict[str, object]:
    """KEY=VALUE pairs; a VALUE that is JSON (8192, true, "x", [1, 2]) is taken as such, else as text."""
    import json

    options: dict[str, object] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE, e.g. kv_cells=16384",
                                     param_hint="--engine-option")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


@click.command("serve")
@click.option("--runtime", required=True, envvar=_env("RUNTIME"), help="Runtime plugin name, e.g. llamacpp.")
@click.option(
    "--model",
    "model",
    required=True,
    envvar=_env("MODEL"),
    help="Model file or directory (a GGUF file, or a directory holding the weights).",
)
@click.option("--host", default="0.0.0.0", show_default=True, envvar=_env("HOST"))  # noqa: S104 - a pod's server
@click.option("--port", default=5000, show_default=True, type=int, envvar=_env("PORT"))
@click.option(
    "--served-model-name",
    envvar=_env("SERVED_MODEL_NAME"),
    help="Name in /v1/models and the `model` field (default: the model file's stem).",
)
@click.option(
    "--context-length",
    default=0,
    type=click.IntRange(min=0),
    envvar=_env("CONTEXT_LENGTH"),
    help="Context per sequence in tokens (0: the runtime's default).",
)
@click.option(
    "--threads",
    default=0,
    type=click.IntRange(min=0),
    envvar=_env("THREADS"),
    help="CPU threads (0: all cores).",
)
@click.option(
    "--n-gpu-layers",
    default=0,
    type=int,
    envvar=_env("N_GPU_LAYERS"),
    help="Layers offloaded to the GPU (-1: all).",
)
@click.option(
    "--max-batch",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    envvar=_env("MAX_BATCH"),
    help="Sequences decoded together.",
)
@click.option(
    "--chat-template-file",
    type=click.Path(exists=True, dir_okay=False),
    envvar=_env("CHAT_TEMPLATE_FILE"),
    help="Jinja chat template overriding the one in the weights.",
)
@click.option(
    "--chat-template",
    "chat_template_text",
    envvar=_env("CHAT_TEMPLATE"),
    help="Jinja chat template text (what a preset supplies; --chat-template-file wins).",
)
@click.option("--adapter", "adapters", multiple=True, envvar=_env("ADAPTER"), help="LoRA adapter NAME=PATH.")
@click.option(
    "--engine-option",
    "engine_options",
    multiple=True,
    help="Runtime-specific setting KEY=VALUE, repeatable (llama.cpp: kv_cells=16384, kv_unified=false; "
    "docs/serving.md lists them).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    envvar=_env("API_KEY_FILE"),
    help="File with bearer keys, one per line (or set KAITO_SERVE_API_KEY). Off by default.",
)
@click.option(
    "--max-tokens-cap",
    default=4096,
    show_default=True,
    type=click.IntRange(min=1),
    envvar=_env("MAX_TOKENS_CAP"),
    help="Largest max_tokens a request may ask for (above: 400).",
)
@click.option(
    "--max-n",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    envvar=_env("MAX_N"),
    help="Largest `n` (choices per request).",
)
@click.option(
    "--queue-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=0),
    envvar=_env("QUEUE_SIZE"),
    help="Requests waiting for a slot before 429.",
)
@click.option(
    "--grace-period",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    envvar=_env("GRACE_PERIOD"),
    help="Seconds in-flight requests get after SIGTERM.",
)
@click.option(
    "--max-body-bytes",
    default=4 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1024),
    envvar=_env("MAX_BODY_BYTES"),
    help="Largest request body; above it: 413 before the body is read.",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    envvar=_env("HEADER_TIMEOUT"),
    help="Seconds a connection may take to send its request headers before it is closed.",
)
@click.option(
    "--stall-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    envvar=_env("STALL_TIMEOUT"),
    help="/health turns 503 when requests run or wait and nothing progresses for this long.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    envvar=_env("LOG_LEVEL"),
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def serve(
    runtime: str,
    model: str,
    host: str,
    port: int,
    served_model_name: str | None,
    context_length: int,
    threads: int,
    n_gpu_layers: int,
    max_batch: int,
    chat_template_file: str | None,
    chat_template_text: str | None,
    adapters: tuple[str, ...],
    engine_options: tuple[str, ...],
    api_key_file: str | None,
    max_tokens_cap: int,
    max_n: int,
    queue_size: int,
    grace_period: float,
    max_body_bytes: int,
    header_timeout: float,
    stall_timeout: float,
    log_level: str,
) -> None:
    """Serve a model over HTTP.

    Endpoints: /chat, /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics.
    """
    import logging

    from kaito_core.plugins import EngineConfig, PluginError, default_registry
    from kaito_core.serving.settings import ServerSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model_path = Path(model)
    if not model_path.exists():
        raise click.BadParameter(f"{model} does not exist", param_hint="--model")
    name = served_model_name or (model_path.stem if model_path.is_file() else model_path.name)
    registry = default_registry()
    try:
        runtime_obj = registry.runtime(runtime)
    except PluginError as exc:  # says which runtimes are installed
        raise click.BadParameter(str(exc), param_hint="--runtime") from exc
    template = (
        Path(chat_template_file).read_text(encoding="utf-8") if chat_template_file else chat_template_text
    )
    config = EngineConfig(
        model_path=str(model_path),
        served_model_name=name,
        context_length=context_length,
        threads=threads,
        n_gpu_layers=n_gpu_layers,
        max_batch=max_batch,
        chat_template=template,
        adapters=_parse_adapters(adapters),
        options=_parse_engine_options(engine_options),
    )
    settings = ServerSettings(
        served_model_name=name,
        adapters=tuple(config.adapters),
        max_concurrency=max_batch,
        queue_size=queue_size,
        max_tokens_cap=max_tokens_cap,
        max_n=min(max_n, max_batch),
        api_keys=_read_keys(api_key_file),
        grace_period=grace_period,
        max_body_bytes=max_body_bytes,
        header_timeout=header_timeout,
        stall_timeout=stall_timeout,
    )
    try:
        engine = runtime_obj.engine(config)  # what is cheap to check (the weights are there) fails here
    except Exception as exc:
        raise click.ClickException(f"the model could not be loaded: {exc}") from exc
    # An engine that can load on a thread of its own starts now, so that reading the weights overlaps
    # importing the web stack below (Starlette, uvicorn); the server's load() then waits for it.
    start_loading = getattr(engine, "start_loading", None)
    if callable(start_loading):
        start_loading()
    from kaito_core.serving.server import LoadFailed, run

    try:
        run(engine, settings, host=host, port=port, log_level=log_level)
    except LoadFailed as exc:
        raise click.ClickException(f"the model could not be loaded: {exc}") from exc


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
    group.add_command(serve)
