"""Loading a GGUF with llama.cpp: the model, one context for every sequence, its batch and adapters.

All sequences share one llama.cpp context, each with its own seq_id. The KV cache is by default one
pool of cells (``kv_unified``; as many as one sequence's context) that every sequence draws from, so
any one request can use the whole context while the pool costs what a single sequence's cache costs.
The option ``kv_unified: false`` gives each sequence a fixed slice of its own instead (n_ctx =
per-sequence context x max_batch).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_core.plugins import FALLBACK_TEMPLATE, ChatTemplate, EngineConfig
from kaito_runtime_llamacpp.tokens import Vocab

log = logging.getLogger("kaito.llamacpp")
#: llama.cpp's own log, at its own levels: errors only, unless kaito serve runs with --log-level debug.
native_log = logging.getLogger("kaito.llamacpp.native")
#: ggml's log levels (ggml.h). llama-cpp-python's callback maps an older order and prints every
#: warning of a load as an error, so the engine installs its own.
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONTINUE = 5
_log_callback: Any = None  # kept alive for as long as llama.cpp may call it

#: Per-sequence context when neither the request config nor a smaller training context says otherwise.
DEFAULT_CONTEXT = 4096
#: Prompt tokens decoded per step at most (llama.cpp's n_batch).
N_BATCH = 512


class EngineError(RuntimeError):
    pass


def flag(value: object) -> bool:
    """A runtime option's boolean: YAML gives bools, the CLI's ``--engine-option`` gives strings."""
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def find_gguf(path: str) -> Path:
    """The GGUF file at `path`, or the single (first-shard) GGUF inside the directory `path`."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        candidates = sorted(p.glob("*.gguf"))
        firsts = [c for c in candidates if "-00001-of-" in c.name] or candidates
        if len(firsts) == 1:
            return firsts[0]
        if not firsts:
            raise EngineError(f"no .gguf file in {path}")
        raise EngineError(
            f"several GGUF files in {path} ({', '.join(c.name for c in firsts)}); pass one file"
        )
    raise EngineError(f"model path {path} does not exist")


def extra_buffer_types(options: Mapping[str, Any]) -> bool:
    """Whether llama.cpp may repack weights into extra buffer types (AMX, AVX-512 layouts).

    Off by default: a CPU can advertise AMX that the kernel or a sandbox does not let a process use,
    and the first tile instruction then kills the server with SIGILL (seen on this project's build
    machines). Turn it on with the runtime option ``extra_buffer_types`` or KAITO_LLAMACPP_REPACK=1.
    """
    if "extra_buffer_types" in options:
        return flag(options["extra_buffer_types"])
    return os.environ.get("KAITO_LLAMACPP_REPACK", "").strip().lower() in {"1", "true", "yes", "on"}


def _forward_native_log(L: Any) -> None:
    global _log_callback
    native_log.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR)
    if _log_callback is not None:
        return
    last = [logging.DEBUG]

    def forward(level: int, text: bytes, _user_data: Any) -> None:
        last[0] = last[0] if level == _GGML_CONTINUE else _GGML_LEVELS.get(level, logging.DEBUG)
        if native_log.isEnabledFor(last[0]):
            native_log.log(last[0], "%s", text.decode("utf-8", "replace").rstrip("\n"))

    _log_callback = L.llama_log_callback(forward)
    L.llama_log_set(_log_callback, None)


def _whole_number(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name, default) or default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EngineError(
            f"the engine option {name} must be a whole number of tokens, not {value!r}"
        ) from None


@dataclass
class Loaded:
    """What loading made; freed by :func:`free`."""

    model: Any
    ctx: Any
    mem: Any
    batch: Any
    vocab: Vocab
    template: ChatTemplate
    n_ctx_seq: int  # the context any one sequence may use
    kv_cells: int  # cells in the shared pool; 0: each sequence has its own slice
    n_batch: int  # tokens one llama_decode takes at most
    adapters: list[Any] = field(default_factory=list)  # llama_adapter_lora handles, loaded once
    adapter_names: list[str] = field(default_factory=list)  # the name of each, in the same order
    strengths: list[float] = field(default_factory=list)  # the strength of each: its scale


def load(config: EngineConfig, max_batch: int, threads: int) -> Loaded:
    """Load the model and make its context; raises EngineError with what went wrong."""
    import llama_cpp.llama_cpp as L

    _forward_native_log(L)
    path = find_gguf(config.model_path)
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.n_gpu_layers = config.n_gpu_layers  # negative: every layer
    mparams.use_extra_bufts = extra_buffer_types(config.options)
    model = L.llama_model_load_from_file(str(path).encode(), mparams)
    if not model:
        raise EngineError(f"llama.cpp could not load {path} (not a GGUF file, or an unsupported model)")
    try:
        return _contextualize(L, model, path, config, max_batch, threads)
    except BaseException:
        L.llama_model_free(model)
        raise


def _contextualize(
    L: Any, model: Any, path: Path, config: EngineConfig, max_batch: int, threads: int
) -> Loaded:
    n_ctx_train = L.llama_model_n_ctx_train(model)
    per_seq = config.context_length or min(DEFAULT_CONTEXT, n_ctx_train)
    if per_seq > n_ctx_train:
        log.warning("context %d is longer than the model's training context %d", per_seq, n_ctx_train)
    options = config.options
    # kv_unified on (the default): one pool of cells shared by every sequence, by default one context's
    # worth; a context per sequence instead costs max_batch times the memory, for cells that short chats
    # never fill. A sequence that does not fit the pool waits or is preempted (scheduler.py).
    unified = flag(options.get("kv_unified", True))
    pool = _whole_number(options, "kv_cells", per_seq)
    n_batch = max(_whole_number(options, "n_batch", N_BATCH), max_batch)
    cparams = L.llama_context_default_params()
    cparams.n_ctx = pool if unified else per_seq * max_batch
    cparams.n_seq_max = max_batch
    cparams.kv_unified = unified
    # swa_full off: layers with sliding-window attention (5 of 6 in Gemma 3) keep only the window (+ one
    # ubatch) per sequence instead of the full context, which llama.cpp's default allocates and clears.
    # What it costs: a sequence's cells cannot be rewound past the window; the prefix cache checks how
    # far back a cached sequence still reaches before it resumes one (engine.py).
    cparams.swa_full = flag(options.get("swa_full", False))
    cparams.n_batch = cparams.n_ubatch = n_batch
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.no_perf = True
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        raise EngineError(f"llama.cpp could not create a context of {cparams.n_ctx} tokens (out of memory?)")
    n_ctx = L.llama_n_ctx(ctx)
    vocab = Vocab(L, L.llama_model_get_vocab(model))
    source = config.chat_template
    if source is None:
        raw = L.llama_model_chat_template(model, None)
        source = raw.decode("utf-8", "replace") if raw else None
    if source is None:
        log.warning("no chat template in the preset or the weights; chat requests use a plain fallback")
        source = FALLBACK_TEMPLATE
    loaded = Loaded(
        model=model,
        ctx=ctx,
        mem=L.llama_get_memory(ctx),
        batch=L.llama_batch_init(n_batch, 0, 1),
        vocab=vocab,
        template=ChatTemplate(source, bos_token=vocab.bos_text, eos_token=vocab.eos_text),
        n_ctx_seq=min(per_seq, n_ctx) if unified else n_ctx // max_batch,
        kv_cells=n_ctx if unified else 0,
        n_batch=L.llama_n_batch(ctx),  # llama.cpp caps it at n_ctx (a small pool)
    )
    try:
        _load_adapters(L, loaded, config, path)
    except BaseException:
        free(loaded, keep_model=True)
        raise
    log.info(
        "loaded %s: %d sequences x %d tokens (%s), %d threads, n_gpu_layers=%d",
        path.name, max_batch, loaded.n_ctx_seq,
        f"a shared pool of {loaded.kv_cells} KV cells" if loaded.kv_cells else "a KV slice each",
        threads, config.n_gpu_layers,
    )  # fmt: skip
    return loaded


def adapter_strengths(config: EngineConfig) -> dict[str, float]:
    """Each adapter's strength (the runtime option ``strength.<name>``, a number in [0, 1], default 1)."""
    strengths: dict[str, float] = {}
    for name in config.adapters:
        raw = config.options.get(f"strength.{name}", 1.0)
        try:
            value = float(str(raw))
        except ValueError:
            raise EngineError(f"adapter {name}: strength {raw!r} is not a number in [0, 1]") from None
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise EngineError(f"adapter {name}: strength {value} is not in [0, 1]")
        strengths[name] = value
    return strengths


def adapter_file(name: str, location: str, base: Path, cache: str | None) -> Path:
    """The GGUF LoRA of an adapter: a PEFT directory (adapter_config.json) converted for the base model
    (lora_gguf.py, cached by content), else the GGUF file at ``location``."""
    from kaito_runtime_llamacpp.lora_gguf import LoraConversionError, converted

    directory = Path(location)
    if (directory / "adapter_config.json").is_file():
        try:
            return converted(directory, base, cache)
        except (LoraConversionError, OSError) as exc:
            raise EngineError(f"adapter {name}: {exc}") from exc
    try:
        return find_gguf(location)
    except EngineError as exc:
        raise EngineError(
            f"adapter {name}: {exc} (llama.cpp takes a PEFT adapter directory with adapter_config.json "
            "and adapter_model.safetensors, or a GGUF LoRA)"
        ) from exc


def _load_adapters(L: Any, loaded: Loaded, config: EngineConfig, base: Path) -> None:
    """Each LoRA adapter loaded once; which ones apply, at what scale, is set per decode (engine.py)."""
    strengths = adapter_strengths(config)
    cache = config.options.get("adapter_cache")
    for name, location in config.adapters.items():
        path = adapter_file(name, location, base, str(cache) if cache else None)
        adapter = L.llama_adapter_lora_init(loaded.model, str(path).encode())
        if not adapter:
            raise EngineError(f"adapter {name}: llama.cpp could not load {path} (made for this model?)")
        loaded.adapters.append(adapter)
        loaded.adapter_names.append(name)
        loaded.strengths.append(strengths[name])
    if loaded.adapters:
        pairs = zip(loaded.adapter_names, loaded.strengths, strict=True)
        log.info("LoRA adapters loaded: %s", ", ".join(f"{n} (strength {s:g})" for n, s in pairs))


def apply_adapters(L: Any, loaded: Loaded, key: tuple[tuple[int, float], ...]) -> None:
    """Make the context apply the adapters of ``key`` ((index, scale) pairs; empty: the base model)."""
    if not key:
        L.llama_set_adapters_lora(loaded.ctx, None, 0, None)
        return
    handles = (L.llama_adapter_lora_p_ctypes * len(key))(*(loaded.adapters[i] for i, _ in key))
    scales = (ctypes.c_float * len(key))(*(scale for _, scale in key))
    if L.llama_set_adapters_lora(loaded.ctx, handles, len(key), scales) != 0:
        raise EngineError("llama.cpp refused the LoRA adapters")


def free(loaded: Loaded, keep_model: bool = False) -> None:
    import llama_cpp.llama_cpp as L

    L.llama_batch_free(loaded.batch)
    for adapter in loaded.adapters:
        L.llama_adapter_lora_free(adapter)
    loaded.adapters.clear()
    L.llama_free(loaded.ctx)
    if not keep_model:
        L.llama_model_free(loaded.model)
