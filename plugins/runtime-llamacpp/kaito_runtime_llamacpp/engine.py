"""An Engine over llama.cpp with continuous batching.

All sequences share one llama.cpp context, each with its own seq_id. The KV cache is one pool of cells
(``kv_unified``; by default as many as one sequence's context) that every sequence draws from, so any
one request can use the whole context while the pool costs what a single sequence's cache costs. When
it runs out, the sequence admitted last is preempted: its cells are freed and it waits, to be
recomputed (its prompt plus what it generated) once cells are free again; its client only sees a pause.
The option ``kv_unified: false`` gives each sequence a fixed slice of its own instead (n_ctx =
per-sequence context x max_batch). One dedicated thread owns the context (llama.cpp is not
thread-safe) and runs the loop:

1. admit waiting requests into free seq_ids while the pool has cells for their prompts, drop cancelled
   ones (``llama_memory_seq_rm`` frees cells);
2. build one batch: the next token of every generating sequence, then prompt tokens of newcomers,
   chunked to n_batch (so a long prompt is prefilled across steps while the others keep decoding);
3. ``llama_decode`` once, sample each sequence with its own sampler chain from its row of logits;
4. hand text to asyncio with ``loop.call_soon_threadsafe`` into the request's queue.

So every decode step advances every running sequence, and new requests join between steps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import heapq
import logging
import os
import platform
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaito_core.plugins import ChatMessage, Chunk, EngineConfig, EngineHealth, SamplingParams
from kaito_runtime_llamacpp.bindings import complete_package, low_level
from kaito_runtime_llamacpp.text import IncrementalDetokenizer, StopMatcher

if TYPE_CHECKING:  # imported when loading (jinja2: ~40 ms that `kaito serve` spends before loading starts)
    from kaito_core.plugins import ChatTemplate

log = logging.getLogger("kaito.llamacpp")

#: Per-sequence context when neither the request config nor a smaller training context says otherwise.
DEFAULT_CONTEXT = 4096
#: Prompt tokens decoded per step at most (llama.cpp's n_batch).
N_BATCH = 512
#: Tokens the repetition/presence/frequency penalties look back over.
PENALTY_LAST_N = 64


def _flag(value: object) -> bool:
    """A runtime option's boolean: YAML gives bools, the CLI's ``--engine-option`` gives strings."""
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


class EngineError(RuntimeError):
    pass


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


def _extra_buffer_types(options: Mapping[str, Any]) -> bool:
    """Whether llama.cpp may repack weights into extra buffer types (AMX, AVX-512 layouts).

    Off by default: a CPU can advertise AMX that the kernel or a sandbox does not let a process use,
    and the first tile instruction then kills the server with SIGILL (seen on this project's build
    machines). Turn it on with the runtime option ``extra_buffer_types`` or KAITO_LLAMACPP_REPACK=1.
    """
    if "extra_buffer_types" in options:
        return _flag(options["extra_buffer_types"])
    return os.environ.get("KAITO_LLAMACPP_REPACK", "").strip().lower() in {"1", "true", "yes", "on"}


def _silence_llama_log(L: Any) -> bool:
    """Point llama.cpp's log at a native function that does nothing; False where that is not safe.

    llama-cpp-python's own log callback is Python: loading calls it ~1400 times (one per line of
    llama.cpp's log, printed or not), and each call must take the GIL, which `kaito serve`'s main thread
    holds while it imports the web stack in parallel. Measured: `kaito serve` -> /health 200 in 0.92 s
    instead of 1.06 s. libc's ``abs`` stands in for ``void (*)(int level, const char *, void *)``: it
    reads only the first integer argument and has no side effects; on the x86-64 and AArch64 Linux
    calling conventions the extra arguments are ignored and the return value is discarded.
    """
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "aarch64"}:
        return False
    try:
        native_abs = ctypes.CDLL(None).abs
    except (OSError, AttributeError):
        return False
    L.llama_log_set(ctypes.cast(native_abs, L.llama_log_callback), ctypes.c_void_p(0))
    return True


#: Models being loaded ahead of their engine (``prefetch_model``), by (file, n_gpu_layers, repacking).
_prefetched: dict[tuple[str, int, bool], concurrent.futures.Future[Any]] = {}
_prefetch_lock = threading.Lock()


def _model_key(path: Path, n_gpu_layers: int, extra_buffer_types: bool) -> tuple[str, int, bool]:
    return (str(path.resolve()), n_gpu_layers, extra_buffer_types)


def prefetch_model(model_path: str, n_gpu_layers: int, options: Mapping[str, Any] | None = None) -> None:
    """Start loading a GGUF on a thread of its own; an engine created later for the same file, GPU
    layers and repacking takes this model instead of loading it again (``kaito run`` calls this, through
    the runtime's ``prefetch``, while it still validates and plans: local/hints.py). For Gemma 3's 262k
    vocabulary, loading is ~0.25 s of building the vocabulary, whatever the size of the weights."""
    L = low_level()
    path = find_gguf(model_path)
    repack = _extra_buffer_types(options or {})
    key = _model_key(path, n_gpu_layers, repack)
    with _prefetch_lock:
        if key in _prefetched:
            return
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        _prefetched[key] = future
    # llama.cpp's log is silenced as the engine silences it below debug level; a prefetch runs before
    # `kaito serve` has read its log level
    _silence_llama_log(L)

    def target() -> None:
        future.set_running_or_notify_cancel()
        try:
            L.llama_backend_init()
            params = L.llama_model_default_params()
            params.n_gpu_layers = n_gpu_layers
            params.use_extra_bufts = repack
            future.set_result(L.llama_model_load_from_file(str(path).encode(), params) or None)
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name="llamacpp-prefetch", daemon=True).start()
    complete_package()  # the rest of llama_cpp's import, while the load runs


def _take_prefetched(key: tuple[str, int, bool]) -> Any:
    """The prefetched model for ``key`` (waiting for its load), or None; prefetched models of other
    keys (a stale hint) are freed."""
    L = low_level()

    with _prefetch_lock:
        taken = _prefetched.pop(key, None)
        others = list(_prefetched.values())
        _prefetched.clear()
    for future in others:
        with contextlib.suppress(BaseException):
            model = future.result()
            if model:
                L.llama_model_free(model)
    if taken is None:
        return None
    try:
        return taken.result()
    except BaseException:  # the engine's own load tries again and reports the error
        return None


@dataclass(eq=False)
class _Sequence:
    prompt: list[int]  # tokens to prefill: the prompt, plus what was generated before a preemption
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Chunk | BaseException]
    seq_id: int = -1
    n_past: int = 0  # tokens of this sequence in the KV cache
    prefilled: int = 0  # prompt tokens sent to llama_decode
    next_token: int | None = None  # sampled, not yet decoded
    output_index: int = -1  # row of logits to sample in the current batch
    generated: list[int] = field(default_factory=list)
    sampler: Any = None
    eog_suppressed: bool = False
    cancelled: bool = False
    admitted: int = 0  # admission order: preemption takes the sequence admitted last
    prompt_len: int = 0  # tokens of the original prompt at the start of ``prompt``
    detok: IncrementalDetokenizer = field(default_factory=IncrementalDetokenizer)
    stops: StopMatcher = field(default_factory=lambda: StopMatcher(()))


class LlamaCppEngine:
    """The Engine contract (kaito_core.plugins.Engine) over llama-cpp-python's low-level API."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.max_batch = max(1, config.max_batch)
        self.threads = config.threads or os.cpu_count() or 1
        self.max_observed_batch = 0  # the most sequences one llama_decode call carried
        #: greedy requests without penalties take an argmax over the logits instead of the sampler chain
        self.fast_greedy = _flag(config.options.get("fast_greedy", True))
        self.steps = 0
        self.preemptions = 0  # sequences sent back to wait because the KV pool was full
        self.prefetched = False  # the model came from prefetch_model()
        self._model: Any = None
        self._ctx: Any = None
        self._vocab: Any = None
        self._mem: Any = None
        self._batch: Any = None
        self._n_ctx_seq = 0
        self._kv_cells = 0  # cells in the unified pool; 0: each sequence has its own slice
        self._admissions = 0
        # after a preemption nothing is admitted until a sequence ends: re-admitting at once would only
        # fill the pool again (and the preempted sequence would be preempted again, for ever)
        self._hold_until_retire = False
        self._n_vocab = 0
        self._eog_tokens: list[int] | None = None  # computed on first need: see _eog()
        self._add_bos = False
        self._bos_text = ""
        self._pieces: dict[int, bytes] = {}
        self._template: ChatTemplate | None = None
        self._adapters: list[Any] = []
        self._cond = threading.Condition()
        self._pending: deque[_Sequence] = deque()
        self._active: list[_Sequence] = []
        # a min-heap: new sequences take the lowest free seq_id, keeping the ids in use compact. With
        # kv_unified off, llama.cpp attends over the span of streams from the lowest to the highest
        # seq_id in a batch: ids {0,2,4,6} cost as much as {0..6} (measured 2x slower than {0..3}).
        self._free_ids: list[int] = list(range(self.max_batch))
        self._thread: threading.Thread | None = None
        self._loading: asyncio.Future[None] | None = None
        self._preload: concurrent.futures.Future[None] | None = None
        self._stopping = False
        self._loaded = False
        self._fatal: str | None = None
        self._last_progress = time.monotonic()

    # ------------------------------------------------------------------------------------------------
    # Engine contract
    # ------------------------------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._n_ctx_seq

    def start_loading(self) -> None:
        """Begin loading on a thread of its own now; ``load()`` then waits for it.

        ``kaito serve`` calls this before it imports the web stack (FastAPI, uvicorn: ~0.3 s), so reading
        the weights and building the KV cache (ctypes calls, which release the GIL) overlap the imports.
        The Python modules loading needs are imported here first, in the caller's thread: imported on
        the loading thread, they compete with the web stack's imports for the GIL and hold loading back
        (measured: /health 200 after 0.84 s instead of 0.95 s).
        """
        if self._preload is not None or self._loading is not None:
            return
        low_level()  # the bindings alone (bindings.py): the load starts before the rest of llama_cpp
        preload: concurrent.futures.Future[None] = concurrent.futures.Future()

        def target() -> None:
            if not preload.set_running_or_notify_cancel():
                return
            try:
                self._load()
            except BaseException as exc:  # handed to load(), which reports it as a load failure
                preload.set_exception(exc)
            else:
                preload.set_result(None)

        self._preload = preload
        threading.Thread(target=target, name="llamacpp-load", daemon=True).start()
        # what the end of the load needs, imported here while the load runs
        complete_package()
        import kaito_core.plugins.chat_template  # noqa: F401

    async def load(self) -> None:
        # shielded: a cancelled load (SIGTERM while loading) must not free the model under _load's feet;
        # close() waits for this future instead
        if self._preload is not None:
            self._loading = asyncio.wrap_future(self._preload)
        else:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        await asyncio.shield(self._loading)
        if self._stopping:
            return
        self._thread = threading.Thread(target=self._run, name="llamacpp-decode", daemon=True)
        self._thread.start()

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        if not self._loaded:
            raise EngineError("the model is not loaded")
        if self._fatal:
            raise EngineError(f"the engine stopped: {self._fatal}")
        tokens = self.tokenize(prompt)
        if not tokens:
            raise EngineError("the prompt is empty")
        if len(tokens) >= self._n_ctx_seq:
            raise EngineError(f"the prompt is {len(tokens)} tokens; the context is {self._n_ctx_seq}")
        seq = _Sequence(tokens, params, asyncio.get_running_loop(), asyncio.Queue(), prompt_len=len(tokens))
        seq.stops = StopMatcher(params.stop)
        with self._cond:
            if self._stopping:  # the decode loop is gone or going: nobody would ever answer
                raise EngineError("the engine is shutting down")
            self._pending.append(seq)
            self._cond.notify()
        finished = False
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if item.finish_reason is not None:
                    finished = True
                yield item
                if finished:
                    return
        finally:
            if not finished:
                # The consumer went away (client disconnect, cancellation): free the slot at the next step.
                seq.cancelled = True
                with self._cond:
                    self._cond.notify()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        if self._template is None:
            raise EngineError("the model is not loaded")
        return self._template.render(messages, add_generation_prompt=True)

    def health(self) -> EngineHealth:
        thread_alive = self._thread is not None and self._thread.is_alive()
        return EngineHealth(
            loaded=self._loaded,
            alive=self._fatal is None and (thread_alive or not self._loaded),
            error=self._fatal,
            last_progress=self._last_progress,
            running=len(self._active),
        )

    async def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._loading is not None and not self._loading.done():
            await asyncio.wait([self._loading])
        elif self._loading is None and self._preload is not None:  # started, but load() never came
            await asyncio.wait([asyncio.wrap_future(self._preload)])
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._free()

    # ------------------------------------------------------------------------------------------------
    # tokens
    # ------------------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text`; special tokens in it are parsed (chat templates write them as text), and BOS
        is added when the model wants one and the text does not already start with it."""
        L = low_level()

        data = text.encode("utf-8")
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        size = len(data) + 2
        buf = (L.llama_token * size)()
        n = L.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, True)
        if n < 0:
            size = -n
            buf = (L.llama_token * size)()
            n = L.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, True)
        return list(buf[:n])

    def _piece(self, token: int, special: bool = False) -> bytes:
        cached = self._pieces.get(token) if not special else None
        if cached is not None:
            return cached
        L = low_level()

        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        piece = buf.raw[:n]
        if not special:
            self._pieces[token] = piece
        return piece

    # ------------------------------------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        L = low_level()
        verbose = log.isEnabledFor(logging.DEBUG)
        if verbose or not _silence_llama_log(L):
            from llama_cpp import _logger  # imported by low_level() with the bindings

            _logger.set_verbose(verbose)
            L.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        path = find_gguf(self.config.model_path)
        L.llama_backend_init()
        mparams = L.llama_model_default_params()
        mparams.n_gpu_layers = self.config.n_gpu_layers  # negative: every layer
        # Extra buffer types are weight repacking for AMX/AVX: a CPU may advertise AMX that the kernel
        # or sandbox does not let a process use (SIGILL on the first tile instruction). Off unless asked.
        mparams.use_extra_bufts = _extra_buffer_types(self.config.options)
        key = _model_key(path, mparams.n_gpu_layers, mparams.use_extra_bufts)
        model = _take_prefetched(key)
        self.prefetched = bool(model)
        if not model:
            model = L.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise EngineError(f"llama.cpp could not load {path} (not a GGUF file, or an unsupported model)")
        self._model = model
        self._vocab = L.llama_model_get_vocab(model)
        self._n_vocab = L.llama_vocab_n_tokens(self._vocab)
        n_ctx_train = L.llama_model_n_ctx_train(model)
        per_seq = self.config.context_length or min(DEFAULT_CONTEXT, n_ctx_train)
        if per_seq > n_ctx_train:
            log.warning("context %d is longer than the model's training context %d", per_seq, n_ctx_train)
        cparams = L.llama_context_default_params()
        # kv_unified on (the default): one pool of cells shared by every sequence, by default one
        # context's worth. Allocating (and clearing) a context per sequence instead took 0.15 s rather
        # than 0.02 s at 8 x 8192, and 8x the memory, for cells that short chats never fill; a sequence
        # that does not fit waits or is preempted (_admit, _preempt). Off: each sequence gets
        # n_ctx / n_seq_max cells of its own, so one long sequence never makes another wait.
        unified = _flag(self.config.options.get("kv_unified", True))
        try:
            pool = int(self.config.options.get("kv_cells", 0) or per_seq)
        except (TypeError, ValueError):
            raise EngineError(
                f"the engine option kv_cells must be a whole number of tokens, not "
                f"{self.config.options.get('kv_cells')!r}"
            ) from None
        cparams.n_ctx = pool if unified else per_seq * self.max_batch
        cparams.n_seq_max = self.max_batch
        cparams.kv_unified = unified
        # swa_full off: layers with sliding-window attention (5 of 6 in Gemma 3) keep only the window
        # (+ one ubatch) per sequence instead of the full context. llama.cpp's default (on) allocates
        # and clears full-size caches for them: context creation for 8 x 8192 took 0.54 s vs 0.15 s.
        # What it costs: a sequence's cells cannot be rewound past the window (prefix reuse, context
        # shift), which this engine never does: a finished sequence's cells are dropped whole.
        cparams.swa_full = _flag(self.config.options.get("swa_full", False))
        n_batch = int(self.config.options.get("n_batch", N_BATCH))  # prompt tokens per step at most
        cparams.n_batch = max(n_batch, self.max_batch)
        cparams.n_ubatch = max(n_batch, self.max_batch)
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        ctx = L.llama_init_from_model(model, cparams)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not create a context of {cparams.n_ctx} tokens (out of memory?)"
            )
        self._ctx = ctx
        self._mem = L.llama_get_memory(ctx)
        n_ctx = L.llama_n_ctx(ctx)
        self._kv_cells = n_ctx if unified else 0
        self._n_ctx_seq = min(per_seq, n_ctx) if unified else n_ctx // self.max_batch
        self._batch = L.llama_batch_init(cparams.n_batch, 0, 1)
        self._n_batch = L.llama_n_batch(ctx)  # llama.cpp caps it at n_ctx (a small pool)
        self._add_bos = bool(L.llama_vocab_get_add_bos(self._vocab))
        bos = L.llama_vocab_bos(self._vocab)
        eos = L.llama_vocab_eos(self._vocab)
        self._bos_text = self._piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else ""
        eos_text = self._piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else ""
        from kaito_core.plugins import FALLBACK_TEMPLATE, ChatTemplate

        source = self.config.chat_template
        if source is None:
            raw = L.llama_model_chat_template(model, None)
            source = raw.decode("utf-8", "replace") if raw else None
        if source is None:
            log.warning("no chat template in the preset or the weights; chat requests use a plain fallback")
            source = FALLBACK_TEMPLATE
        self._template = ChatTemplate(source, bos_token=self._bos_text, eos_token=eos_text)
        self._load_adapters()
        self._last_progress = time.monotonic()
        self._loaded = True
        log.info(
            "loaded %s%s: %d sequences x %d tokens (%s), %d threads, n_gpu_layers=%d",
            path.name,
            " (prefetched)" if self.prefetched else "",
            self.max_batch,
            self._n_ctx_seq,
            f"a shared pool of {self._kv_cells} KV cells" if self._kv_cells else "a KV slice each",
            self.threads,
            self.config.n_gpu_layers,
        )

    def _load_adapters(self) -> None:
        """LoRA adapters (GGUF) apply to every sequence at scale 1.0, as KAITO applies them."""
        L = low_level()

        if not self.config.adapters:
            return
        loaded = []
        for name, location in self.config.adapters.items():
            try:
                path = find_gguf(location)
            except EngineError as exc:
                raise EngineError(
                    f"adapter {name}: {exc} (llama.cpp needs GGUF adapters: convert a PEFT adapter with "
                    "llama.cpp's convert_lora_to_gguf.py)"
                ) from exc
            adapter = L.llama_adapter_lora_init(self._model, str(path).encode())
            if not adapter:
                raise EngineError(f"adapter {name}: llama.cpp could not load {path} (made for this model?)")
            loaded.append(adapter)
            self._adapters.append(adapter)
        handles = (L.llama_adapter_lora_p_ctypes * len(loaded))(*loaded)
        scales = (ctypes.c_float * len(loaded))(*([1.0] * len(loaded)))
        if L.llama_set_adapters_lora(self._ctx, handles, len(loaded), scales) != 0:
            raise EngineError("llama.cpp refused the LoRA adapters")
        log.info("LoRA adapters applied: %s", ", ".join(self.config.adapters))

    def _free(self) -> None:
        L = low_level()

        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        for adapter in self._adapters:
            L.llama_adapter_lora_free(adapter)
        self._adapters.clear()
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None
        self._loaded = False

    # ------------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------------

    def _make_sampler(self, seq: _Sequence) -> Any:
        L = low_level()

        p = seq.params
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        # EOG tokens are masked while min_tokens are not reached yet, or for good with ignore_eos.
        suppress = p.ignore_eos or len(seq.generated) < p.min_tokens
        eog = self._eog() if suppress else []
        if eog:
            biases = (L.llama_logit_bias * len(eog))(
                *(L.llama_logit_bias(token, float("-inf")) for token in eog)
            )
            masked = L.llama_sampler_init_logit_bias(self._n_vocab, len(eog), biases)
            L.llama_sampler_chain_add(chain, masked)
        seq.eog_suppressed = suppress
        if p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
            L.llama_sampler_chain_add(
                chain,
                L.llama_sampler_init_penalties(
                    self._n_vocab,
                    PENALTY_LAST_N,
                    p.repetition_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                ),
            )
        if p.greedy or p.temperature <= 0.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            if p.top_k > 0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(p.top_k))
            if p.typical_p < 1.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_typical(p.typical_p, 1))
            if p.top_p < 1.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(p.top_p, 1))
            if p.min_p > 0.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(p.min_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(p.temperature))
            seed = L.LLAMA_DEFAULT_SEED if p.seed is None else p.seed & 0xFFFFFFFF
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
        # a rebuilt chain (min_tokens reached) relearns the history the penalties look at
        for token in seq.generated[-PENALTY_LAST_N:]:
            L.llama_sampler_accept(chain, token)
        return chain

    # ------------------------------------------------------------------------------------------------
    # the decode thread
    # ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping and not self._active and not self._pending_live():
                        self._cond.wait()
                    if self._stopping:
                        break
                    was_idle = not self._active
                    self._admit()
                if was_idle:
                    self._last_progress = time.monotonic()  # idle time is not a stall
                for seq in [s for s in self._active if s.cancelled]:
                    self._retire(seq)
                if self._active:
                    self._step()
            self._fail_all(EngineError("the server is shutting down"))
        except BaseException as exc:  # the engine is dead: say so to /health and to every waiting request
            self._fatal = f"{type(exc).__name__}: {exc}"
            log.exception("the decode loop stopped")
            self._fail_all(EngineError(f"the engine stopped: {self._fatal}"))

    def _pending_live(self) -> bool:
        while self._pending and self._pending[0].cancelled:
            self._free_sampler(self._pending.popleft())
        return bool(self._pending)

    @staticmethod
    def _free_sampler(seq: _Sequence) -> None:
        """A preempted sequence waits with its sampler; one that leaves the queue frees it."""
        if seq.sampler is not None:
            L = low_level()

            L.llama_sampler_free(seq.sampler)
            seq.sampler = None

    def _admit(self) -> None:
        """Move waiting sequences into free seq_ids, in order, while the pool has cells for their prompts
        (an idle engine always admits one: a prompt is shorter than the context, which the pool holds)."""
        while self._pending and self._free_ids:
            seq = self._pending[0]
            if seq.cancelled:
                self._free_sampler(self._pending.popleft())
                continue
            if self._kv_cells and self._active:
                if self._hold_until_retire:
                    return
                if self._cells_committed() + len(seq.prompt) + 1 > self._kv_cells:
                    return  # first come, first served: the head waits for cells, the rest behind it
            self._pending.popleft()
            seq.seq_id = heapq.heappop(self._free_ids)
            if seq.sampler is None:  # a preempted sequence keeps its sampler (and penalty history)
                seq.sampler = self._make_sampler(seq)
            self._admissions += 1
            seq.admitted = self._admissions
            self._active.append(seq)

    def _cells_committed(self) -> int:
        """Cells the running sequences hold after their next step: what is cached, the rest of their
        prompts, and the token each decodes next."""
        return sum(
            s.n_past + len(s.prompt) - s.prefilled + (s.next_token is not None) for s in self._active
        )

    def _preempt(self, seq: _Sequence) -> None:
        """Free a running sequence's cells and send it back to the head of the queue; it is recomputed
        from its prompt plus the tokens it generated (the last one, sampled but not yet decoded,
        included), so it resumes exactly where it was."""
        L = low_level()

        L.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
        self._active.remove(seq)
        heapq.heappush(self._free_ids, seq.seq_id)
        seq.seq_id = -1
        seq.prompt = seq.prompt[: seq.prompt_len] + seq.generated
        seq.prefilled = 0
        seq.n_past = 0
        seq.next_token = None
        seq.output_index = -1
        self._pending.appendleft(seq)
        self._hold_until_retire = True
        self.preemptions += 1
        log.info(
            "KV pool full (%d cells): a sequence of %d tokens waits to be recomputed (%d running)",
            self._kv_cells, len(seq.prompt), len(self._active),
        )

    def _step(self) -> None:
        L = low_level()

        batch = self._batch
        n = 0
        carried: list[_Sequence] = []
        # what this step changes, restored if llama_decode finds no room for it
        before = {seq: (seq.n_past, seq.prefilled, seq.next_token) for seq in self._active}

        def add(token: int, seq: _Sequence, output: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = output
            if output:
                seq.output_index = n
            seq.n_past += 1
            n += 1

        # llama.cpp is much faster when a batch lists its sequences in ascending seq_id order (measured
        # 2x at 4 sequences with kv_unified off: descending order took the slow path), so sort
        self._active.sort(key=lambda s: s.seq_id)
        # decode tokens first: one per generating sequence, so no sequence waits on a long prefill
        for seq in self._active:
            if seq.next_token is not None:
                add(seq.next_token, seq, True)
                seq.next_token = None
                carried.append(seq)
        # then prompt tokens of sequences still prefilling, as many as fit in n_batch
        for seq in self._active:
            room = self._n_batch - n
            if room <= 0:
                break
            remaining = len(seq.prompt) - seq.prefilled
            if remaining <= 0 or seq in carried:
                continue
            take = min(room, remaining)
            for i in range(seq.prefilled, seq.prefilled + take):
                add(seq.prompt[i], seq, i == len(seq.prompt) - 1)
            seq.prefilled += take
            carried.append(seq)
        batch.n_tokens = n
        rc = L.llama_decode(self._ctx, batch)
        if rc != 0:
            if rc < 0:
                raise EngineError(f"llama_decode failed with {rc}")
            # 1: no KV slot (2: aborted). The cache is as before this call; so is every sequence.
            for seq, (n_past, prefilled, next_token) in before.items():
                seq.n_past, seq.prefilled, seq.next_token = n_past, prefilled, next_token
                seq.output_index = -1
            if rc == 1 and len(self._active) > 1:
                self._preempt(max(self._active, key=lambda s: s.admitted))
                return
            for seq in carried:
                self._retire(seq, EngineError(f"llama_decode returned {rc}: the KV cache is full"))
            return
        self.steps += 1
        self.max_observed_batch = max(self.max_observed_batch, len(carried))
        self._last_progress = time.monotonic()
        for seq in carried:
            if seq.output_index >= 0:
                index, seq.output_index = seq.output_index, -1
                if self.fast_greedy and self._plain_greedy(seq.params):
                    token = self._argmax(index, mask_eog=seq.eog_suppressed)
                else:
                    token = L.llama_sampler_sample(seq.sampler, self._ctx, index)
                self._on_token(seq, token)

    def _eog(self) -> list[int]:
        """Every end-of-generation token, for masking (min_tokens, ignore_eos).

        Found by asking llama.cpp about each token of the vocabulary: 0.1-0.3 s for Gemma's 262k, so it
        is done on the first request that needs it (decode thread only), not at load; ending a sequence
        asks ``llama_vocab_is_eog`` about the sampled token alone.
        """
        if self._eog_tokens is None:
            L = low_level()

            vocab = self._vocab
            self._eog_tokens = [t for t in range(self._n_vocab) if L.llama_vocab_is_eog(vocab, t)]
        return self._eog_tokens

    @staticmethod
    def _plain_greedy(p: SamplingParams) -> bool:
        no_penalties = p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty
        return (p.greedy or p.temperature <= 0.0) and no_penalties

    def _argmax(self, index: int, mask_eog: bool) -> int:
        """Greedy without the sampler: llama_sampler_sample first copies all n_vocab logits into a
        candidate array (~0.9 ms for Gemma's 262k vocabulary, 12% of a decode step at 8 sequences); an
        argmax over the logits row picks the same token (the first maximum, like the greedy sampler)."""
        L = low_level()
        import numpy as np

        row = np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, index), shape=(self._n_vocab,))
        eog = self._eog() if mask_eog else []
        if eog:
            row[eog] = -np.inf  # this row is ours until the next decode
        return int(row.argmax())

    def _on_token(self, seq: _Sequence, token: int) -> None:
        L = low_level()

        seq.generated.append(token)
        p = seq.params
        if seq.eog_suppressed and not p.ignore_eos and len(seq.generated) >= p.min_tokens:
            L.llama_sampler_free(seq.sampler)
            seq.sampler = self._make_sampler(seq)
        if L.llama_vocab_is_eog(self._vocab, token):
            text, _ = seq.stops.feed(seq.detok.flush())
            self._retire(seq, Chunk(text + seq.stops.flush(), tokens=1, finish_reason="stop"))
            return
        text, hit = seq.stops.feed(seq.detok.feed(self._piece(token)))
        if hit:
            self._retire(seq, Chunk(text, tokens=1, finish_reason="stop"))
        elif len(seq.generated) >= p.max_tokens or seq.n_past + 1 >= self._n_ctx_seq:
            tail, _ = seq.stops.feed(seq.detok.flush())
            self._retire(seq, Chunk(text + tail + seq.stops.flush(), tokens=1, finish_reason="length"))
        else:
            seq.next_token = token
            self._emit(seq, Chunk(text, tokens=1))

    def _emit(self, seq: _Sequence, item: Chunk | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
            seq.loop.call_soon_threadsafe(seq.queue.put_nowait, item)

    def _retire(self, seq: _Sequence, last: Chunk | BaseException | None = None) -> None:
        """End a sequence: its last chunk (if anyone listens), free its KV cells, sampler and seq_id."""
        L = low_level()

        L.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
        self._free_sampler(seq)
        self._active.remove(seq)
        heapq.heappush(self._free_ids, seq.seq_id)
        seq.seq_id = -1
        self._hold_until_retire = False
        if last is not None and not seq.cancelled:  # resources are back before the client hears the end
            self._emit(seq, last)

    def _fail_all(self, error: BaseException) -> None:
        for seq in list(self._active):
            with contextlib.suppress(Exception):
                self._retire(seq, error)
        with self._cond:
            while self._pending:
                seq = self._pending.popleft()
                self._free_sampler(seq)
                self._emit(seq, error)
