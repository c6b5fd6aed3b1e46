"""An Engine over llama.cpp with continuous batching.

Every sequence shares one llama.cpp context (loading.py). One dedicated thread owns the context
(llama.cpp is not thread-safe) and runs the loop:

1. drop cancelled waiters, admit waiting sequences while the KV pool has cells for them, retire
   cancelled running ones (scheduler.py decides; ``llama_memory_seq_rm`` frees their cells);
2. build one batch: the next token of every generating sequence, then prompt tokens of newcomers,
   chunked to n_batch (so a long prompt is prefilled across steps while the others keep decoding);
   a newcomer sharing a prefix with a running sequence (a common system prompt) takes its cells;
3. ``llama_decode`` once per LoRA adapter set among the batch's sequences (each request chooses its
   set, ``SamplingParams.adapter``; ``llama_set_adapters_lora`` before each), then pick each
   sequence's next token from its row of logits (sampling.py) before the next decode overwrites them;
4. hand text to asyncio with ``loop.call_soon_threadsafe`` into the request's queue.

So every decode step advances every running sequence, and new requests join between steps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from kaito_core.plugins import (
    ChatMessage,
    Chunk,
    EngineConfig,
    EngineHealth,
    RequestError,
    SamplingParams,
    TokenLogprob,
)
from kaito_runtime_llamacpp import kv_edits, sampling
from kaito_runtime_llamacpp.loading import (
    EngineError,
    Loaded,
    adapter_strengths,
    apply_adapters,
    find_gguf,
    flag,
    free,
    load,
)
from kaito_runtime_llamacpp.output import Stream, chunk_for
from kaito_runtime_llamacpp.scheduler import Entry, Scheduler, split_by_adapters
from kaito_runtime_llamacpp.scheduler import Sequence as Seq
from kaito_runtime_llamacpp.text import StopMatcher

log = logging.getLogger("kaito.llamacpp")

__all__ = ["EngineError", "LlamaCppEngine"]

#: tokenizations count_tokens keeps for stream() to take (one per request in flight is plenty)
_TOKENIZED_KEPT = 64


class LlamaCppEngine:
    """The Engine contract (kaito_core.plugins.Engine) over llama-cpp-python's low-level API."""

    def __init__(self, config: EngineConfig) -> None:
        find_gguf(config.model_path)  # no weights: an error now, before a server starts around them
        adapter_strengths(config)  # a bad strength too
        self.config = config
        self.max_batch = max(1, config.max_batch)
        self.threads = config.threads or os.cpu_count() or 1
        self.max_observed_batch = 0  # the most sequences one llama_decode call carried
        #: how each next token is picked: shortcuts around the sampler chain that pick what it would
        self.picker = sampling.Picker(
            fast_greedy=flag(config.options.get("fast_greedy", True)),
            fast_top_k=flag(config.options.get("fast_top_k", True)),
        )
        #: a finished sequence's KV cells are kept for the next prompt that starts with the same tokens
        self.prefix_cache = flag(config.options.get("prefix_cache", True))
        self.steps = 0
        #: steps that decoded sequences of more than one adapter set (one llama_decode per set)
        self.mixed_steps = 0
        self._loaded: Loaded | None = None
        self._context_length = 0  # known once loaded (and still after close)
        self._scheduler = Scheduler(self.max_batch)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loading: asyncio.Future[Loaded] | None = None
        self._early: concurrent.futures.Future[Loaded] | None = None
        self._stopping = False
        self._fatal: str | None = None
        self._last_progress = time.monotonic()
        #: the adapter set the context applies now ((index, scale) pairs; () for the base model alone)
        self._applied: tuple[tuple[int, float], ...] = ()
        #: texts counted lately (the server counts a prompt, then streams it), oldest first
        self._tokenized: dict[str, list[int]] = {}
        self._tokenized_lock = threading.Lock()

    @property
    def reused_tokens(self) -> int:
        """Prompt tokens taken from the prefix cache instead of computed."""
        return self._scheduler.reused_tokens

    @property
    def shared_tokens(self) -> int:
        """Prompt tokens taken from a running sequence's KV cells (a shared prefix) instead of computed."""
        return self._scheduler.shared_tokens

    @property
    def preemptions(self) -> int:
        """Sequences sent back to wait because the KV pool was full."""
        return self._scheduler.preemptions

    # ------------------------------------------------------------------------------------------------
    # Engine contract
    # ------------------------------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._context_length

    def start_loading(self) -> None:
        """Begin loading on a thread of its own now; ``load()`` then waits for it. ``kaito serve`` calls
        this before it imports the web stack, so the two overlap (ctypes releases the GIL)."""
        if self._early is None and self._loading is None:
            executor = concurrent.futures.ThreadPoolExecutor(1, "llamacpp-load")
            self._early = executor.submit(self._load)
            executor.shutdown(wait=False)  # its thread ends with the load

    async def load(self) -> None:
        # shielded: a cancelled load (SIGTERM while loading) must not free the model under _load's feet;
        # close() waits for this future instead
        if self._early is not None:
            self._loading = asyncio.wrap_future(self._early)
        else:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        loaded = await asyncio.shield(self._loading)
        with self._cond:
            if self._stopping:
                return
            self._loaded = loaded
            self._context_length = loaded.n_ctx_seq
            self._scheduler = Scheduler(self.max_batch, loaded.kv_cells, self.prefix_cache)
        self._last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="llamacpp-decode", daemon=True)
        self._thread.start()

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        loaded = self._loaded
        if loaded is None:
            raise EngineError("the model is not loaded")
        if self._fatal:
            raise EngineError(f"the engine stopped: {self._fatal}")
        tokens = self._tokenized.get(prompt)  # counted by the server a moment ago: not twice
        if tokens is None:
            # never on the event loop: tokenizing a long text takes seconds and would stop every stream
            tokens = await asyncio.to_thread(loaded.vocab.tokenize, prompt)
        if not tokens:
            raise EngineError("the prompt is empty")
        if len(tokens) >= loaded.n_ctx_seq:
            raise EngineError(f"the prompt is {len(tokens)} tokens; the context is {loaded.n_ctx_seq}")
        if params.json_schema is not None:  # an unusable schema is the client's 400, before anything runs
            await asyncio.to_thread(sampling.grammar_for, params.json_schema)
        adapters = self.adapter_set(params.adapter)
        work = Stream(asyncio.get_running_loop(), asyncio.Queue(), StopMatcher(params.stop))
        seq = Seq(tokens, params, work=work, adapters=adapters)
        with self._cond:
            if self._stopping:  # the decode loop is gone or going: nobody would ever answer
                raise EngineError("the engine is shutting down")
            self._scheduler.submit(seq)
            self._cond.notify()
        finished = False
        try:
            while True:
                item = await work.queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finish_reason is not None
                yield item
                if finished:
                    return
        finally:
            if not finished:
                # The consumer went away (client disconnect, cancellation): free the slot at the next step.
                seq.cancelled = True
                with self._cond:
                    self._cond.notify()

    def adapter_set(self, choice: str | None) -> tuple[tuple[int, float], ...]:
        """The (index, scale) pairs a request's ``SamplingParams.adapter`` asks for: None, every adapter at
        its strength; "", none; a name, that adapter at its strength. Strength 0 applies nothing."""
        assert self._loaded is not None
        names, strengths = self._loaded.adapter_names, self._loaded.strengths
        if choice is None:
            chosen = list(range(len(names)))
        elif choice == "":
            chosen = []
        elif choice in names:
            chosen = [names.index(choice)]
        else:
            known = ", ".join(names) or "none"
            raise RequestError(f"no adapter named {choice!r} (adapters: {known})", param="model", status=404)
        return tuple((i, strengths[i]) for i in chosen if strengths[i] != 0.0)

    def count_tokens(self, text: str) -> int:
        if self._loaded is None:
            raise EngineError("the model is not loaded")
        tokens = self._loaded.vocab.tokenize(text)
        with self._tokenized_lock:  # the server calls this from its tokenizer threads
            self._tokenized[text] = tokens
            while len(self._tokenized) > _TOKENIZED_KEPT:
                self._tokenized.pop(next(iter(self._tokenized)))
        return len(tokens)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        if self._loaded is None:
            raise EngineError("the model is not loaded")
        return self._loaded.template.render(messages, add_generation_prompt=True)

    def health(self) -> EngineHealth:
        thread_alive = self._thread is not None and self._thread.is_alive()
        loaded = self._loaded is not None
        return EngineHealth(
            loaded=loaded,
            alive=self._fatal is None and (thread_alive or not loaded),
            error=self._fatal,
            last_progress=self._last_progress,
            running=len(self._scheduler.active),
        )

    async def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        loading = self._loading or (asyncio.wrap_future(self._early) if self._early is not None else None)
        if loading is not None:
            await asyncio.wait([loading])  # a load in progress finishes before anything is freed
            if self._loaded is None and not loading.cancelled() and loading.exception() is None:
                free(loading.result())  # loaded after close() began: never served
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._loaded is not None:
            free(self._loaded)
            self._loaded = None

    # ------------------------------------------------------------------------------------------------
    # the decode thread
    # ------------------------------------------------------------------------------------------------

    def _load(self) -> Loaded:
        return load(self.config, self.max_batch, self.threads)

    def _run(self) -> None:
        scheduler = self._scheduler
        try:
            while True:
                with self._cond:
                    while True:
                        for seq in scheduler.drop_cancelled_pending():
                            self._free_sampler(seq)
                        if self._stopping or scheduler.active or scheduler.pending:
                            break
                        self._cond.wait()
                    if self._stopping:
                        break
                    if not scheduler.active:
                        self._last_progress = time.monotonic()  # idle time is not a stall
                    refused: list[tuple[Seq, RequestError]] = []
                    admitted = scheduler.admit()
                    assert self._loaded is not None
                    kv_edits.apply_admissions(self._loaded, scheduler, admitted)
                    for seq in admitted:
                        if seq.work.sampler is None:  # a preempted sequence keeps its sampler (and history)
                            try:
                                seq.work.sampler = self._make_sampler(seq)
                            except RequestError as refusal:  # the request's fault: it alone ends
                                refused.append((seq, refusal))
                for seq, error in refused:
                    self._retire(seq, error)
                for seq in [s for s in scheduler.active if s.cancelled]:
                    self._retire(seq)
                kv_edits.share_prefixes(self._loaded, scheduler)
                if scheduler.active:
                    self._step()
            self._fail_all(EngineError("the server is shutting down"))
        except BaseException as exc:  # the engine is dead: say so to /health and to every waiting request
            self._fatal = f"{type(exc).__name__}: {exc}"
            log.exception("the decode loop stopped")
            self._fail_all(EngineError(f"the engine stopped: {self._fatal}"))

    def _make_sampler(self, seq: Seq) -> Any:
        import llama_cpp.llama_cpp as L

        assert self._loaded is not None
        seq.work.eog_masked = sampling.masks_eog(seq.params, len(seq.generated))
        return sampling.make_sampler(L, self._loaded.vocab, seq.params, seq.generated)

    @staticmethod
    def _free_sampler(seq: Seq) -> None:
        if seq.work.sampler is not None:
            import llama_cpp.llama_cpp as L

            L.llama_sampler_free(seq.work.sampler)
            seq.work.sampler = None

    def _step(self) -> None:
        """One step: every running sequence advances, one llama_decode per adapter set among them."""
        assert self._loaded is not None
        entries, carried = self._scheduler.plan_step(self._loaded.n_batch)
        groups = split_by_adapters(entries, carried, self._applied)
        self.mixed_steps += len(groups) > 1
        for i, group in enumerate(groups):
            if group.adapters != self._applied:
                import llama_cpp.llama_cpp as L

                apply_adapters(L, self._loaded, group.adapters)  # type: ignore[arg-type]
                self._applied = group.adapters  # type: ignore[assignment]
            later = [seq for g in groups[i + 1 :] for seq in g.carried]
            if not self._decode(group.entries, group.carried, later):
                return

    def _decode(self, entries: list[Entry], carried: list[Seq], later: list[Seq]) -> bool:
        """Decode one batch and pick each sequence's next token; False when llama.cpp refused it (this
        batch and ``later``, the step's batches not yet decoded, are undone)."""
        import llama_cpp.llama_cpp as L

        loaded = self._loaded
        assert loaded is not None
        scheduler = self._scheduler
        batch = loaded.batch
        for i, entry in enumerate(entries):
            batch.token[i] = entry.token
            batch.pos[i] = entry.pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = entry.seq.seq_id
            batch.logits[i] = entry.logits
        batch.n_tokens = len(entries)
        rc = L.llama_decode(loaded.ctx, batch)
        if rc != 0:
            if rc < 0:
                raise EngineError(f"llama_decode failed with {rc}")
            # 1: no KV slot (2: aborted). The cache is as before this call; so is every sequence.
            scheduler.undo_step(carried + later)
            if rc == 1 and scheduler.cached:  # cached prefixes give their cells back before anyone waits
                for seq_id in scheduler.evict_cached():
                    L.llama_memory_seq_rm(loaded.mem, seq_id, -1, -1)
                return False
            victim = scheduler.preemption_victim() if rc == 1 else None
            if victim is not None:
                L.llama_memory_seq_rm(loaded.mem, scheduler.preempt(victim), -1, -1)
                log.info(
                    "KV pool full (%d cells): a sequence of %d tokens waits to be recomputed (%d running)",
                    scheduler.kv_cells, len(victim.prompt), len(scheduler.active),
                )  # fmt: skip
                return False
            for seq in carried:
                self._retire(seq, EngineError(f"llama_decode returned {rc}: the KV cache is full"))
            return False
        self.steps += 1
        self.max_observed_batch = max(self.max_observed_batch, len(carried))
        self._last_progress = time.monotonic()
        for seq in carried:
            if seq.output_index >= 0:
                index, seq.output_index = seq.output_index, -1
                token, logprobs = self.picker.pick(L, loaded.ctx, loaded.vocab, index, seq.params,
                                                   seq.work.sampler, seq.work.eog_masked)  # fmt: skip
                self._on_token(seq, token, logprobs)
        return True

    def _on_token(self, seq: Seq, token: int, logprobs: tuple[TokenLogprob, ...] = ()) -> None:
        """Every generated token is one chunk of one token, with its log-probability when asked: text
        held back (a stop string's possible start, half a character) comes out in a later chunk, the
        token's logprob in its own; the token that completes a stop string, and an end-of-generation
        token, are counted and reported too, though their text is not part of the answer."""
        loaded = self._loaded
        assert loaded is not None
        work: Stream = seq.work
        seq.generated.append(token)
        p = seq.params
        if work.eog_masked and not sampling.masks_eog(p, len(seq.generated)):  # min_tokens reached
            self._free_sampler(seq)
            work.sampler = self._make_sampler(seq)
        at_end = len(seq.generated) >= p.max_tokens or seq.n_past + 1 >= loaded.n_ctx_seq
        chunk, done = chunk_for(work, loaded.vocab, token, at_end, logprobs)
        if done:
            self._retire(seq, chunk)
        else:
            seq.next_token = token
            self._emit(seq, chunk)

    @staticmethod
    def _emit(seq: Seq, item: Chunk | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
            seq.work.loop.call_soon_threadsafe(seq.work.queue.put_nowait, item)

    def _retire(self, seq: Seq, last: Chunk | BaseException | None = None) -> None:
        """End a sequence: free its KV cells, sampler and seq_id, then its last chunk (if anyone listens)."""
        import llama_cpp.llama_cpp as L

        assert self._loaded is not None
        # A sequence that ended well (or whose client left) leaves its cells as a cached prefix; one that
        # failed leaves nothing it might share.
        keep = not isinstance(last, BaseException)
        seq_id = self._scheduler.retire(seq, keep=keep)
        if not (keep and seq_id in self._scheduler.cached):
            L.llama_memory_seq_rm(self._loaded.mem, seq_id, -1, -1)
        self._free_sampler(seq)
        if last is not None and not seq.cancelled:  # resources are back before the client hears the end
            self._emit(seq, last)

    def _fail_all(self, error: BaseException) -> None:
        for seq in list(self._scheduler.active):
            with contextlib.suppress(Exception):
                self._retire(seq, error)
        with self._cond:
            while self._scheduler.pending:
                seq = self._scheduler.pending.popleft()
                self._free_sampler(seq)
                self._emit(seq, error)
