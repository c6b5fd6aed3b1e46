"""What the routes share: the engine, the settings, the metrics, admission, and the health policy.

The model is loaded and proven to generate (a one-token warm-up) before /health says 200; every
sequence runs through :meth:`ServerState.sequence`, which keeps the token and latency metrics.

Tokenizing and rendering chat templates run on a small pool of threads, never on the event loop: a
long prompt takes seconds to tokenize, and meanwhile /health and every stream must still answer. Texts
too long to fit the context are refused by their length before they reach the tokenizer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from kaito_core.plugins import ChatMessage, Chunk, Engine, RequestError, SamplingParams, TokenLogprob
from kaito_core.serving.admission import Admission
from kaito_core.serving.metrics import ServerMetrics
from kaito_core.serving.settings import ServerSettings

log = logging.getLogger("kaito.serving")
T = TypeVar("T")

WARMUP_PROMPT = "Hello"


@dataclasses.dataclass
class Generation:
    """One finished sequence."""

    text: str
    completion_tokens: int
    finish_reason: str
    logprobs: list[TokenLogprob] = dataclasses.field(default_factory=list)  # when the request asked


class ServerState:
    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = ServerMetrics()
        self.admission = Admission(settings.max_concurrency, settings.queue_size)
        self.ready = False
        self.load_error: str | None = None
        #: set when a shutdown's grace period is about to end: streams still going end with an error event
        self.cut_streams = asyncio.Event()
        self._tokenizer = concurrent.futures.ThreadPoolExecutor(
            max(1, settings.tokenizer_threads), thread_name_prefix="kaito-tokenize"
        )

    def begin_drain(self, grace: float) -> None:
        """Shutdown began (SIGTERM): cut the streams still running just before the ``grace`` seconds end,
        so each gets a last error event and [DONE] instead of a connection torn mid-chunk."""
        margin = min(1.0, grace / 10)
        asyncio.get_running_loop().call_later(max(0.0, grace - margin), self.cut_streams.set)

    def close(self) -> None:
        self._tokenizer.shutdown(wait=False, cancel_futures=True)

    async def load_and_warm_up(self) -> None:
        """Load the model, then prove it generates: /health says 200 only after this succeeds."""
        try:
            await self.engine.load()
            finish = None
            async for chunk in self.engine.stream(WARMUP_PROMPT, SamplingParams(max_tokens=1, greedy=True)):
                finish = chunk.finish_reason or finish
            if finish is None:
                raise RuntimeError("the warm-up generation ended without a finish reason")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("loading the model failed: %s", self.load_error)
            if self.settings.on_load_failure is not None:
                self.settings.on_load_failure(exc)
            return
        self.ready = True
        log.info("model %s loaded and warmed up", self.settings.served_model_name)

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.load_error:
            return 503, {"status": "Unhealthy", "error": self.load_error}
        if not self.ready:
            return 503, {"status": "Loading"}
        health = self.engine.health()
        if not health.alive:
            return 503, {"status": "Unhealthy", "error": health.error or "the engine stopped"}
        # The watchdog: work is running or waiting, and neither a decode step nor a hand-over of slots
        # happened for stall_timeout. A liveness probe then restarts the pod instead of leaving it wedged.
        waiting = self.admission.waiting
        if health.running > 0 or waiting > 0:
            progress = max(health.last_progress, self.admission.last_change)
            stalled = time.monotonic() - progress
            if stalled > self.settings.stall_timeout:
                return 503, {
                    "status": "Unhealthy",
                    "error": f"{health.running} sequences running and {waiting} requests waiting, but "
                    f"no decode step and no admission for {stalled:.0f}s",
                }
        return 200, {"status": "Healthy"}

    def not_ready_message(self) -> str | None:
        """Why requests cannot be served yet, or None once the model is ready."""
        if self.ready:
            return None
        _, body = self.health()
        return f"the model is not ready: {body.get('error') or body['status']}"

    # -- admission ----------------------------------------------------------------------------------

    def update_gauges(self) -> None:
        self.metrics.queue_depth.set(self.admission.waiting)
        self.metrics.running.set(self.admission.running)

    async def admit(self, count: int) -> None:
        """Wait for `count` slots; QueueFull (429) when the queue is already full."""
        try:
            await self.admission.acquire(count)
        finally:
            self.update_gauges()

    def release(self, count: int) -> None:
        self.admission.release(count)
        self.update_gauges()

    # -- sequences ----------------------------------------------------------------------------------

    async def sequence(self, prompt: str, params: SamplingParams, started: float) -> AsyncIterator[Chunk]:
        """The engine's stream for one sequence, with token and latency metrics."""
        first: float | None = None
        tokens = 0
        stream = self.engine.stream(prompt, params)
        try:
            async for chunk in stream:
                if params.logprobs is not None and chunk.tokens and not chunk.logprobs and tokens == 0:
                    # an engine that ignores the field: refused by name, never answered without them
                    raise RequestError(
                        "logprobs: this server's engine does not report log-probabilities", param="logprobs"
                    )
                if first is None and (chunk.text or chunk.tokens):
                    first = time.monotonic()
                    self.metrics.time_to_first_token.observe(first - started)
                if chunk.tokens:
                    tokens += chunk.tokens
                    self.metrics.generation_tokens.inc(chunk.tokens)
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            if first is not None and tokens > 1:
                elapsed = time.monotonic() - first
                if elapsed > 0:
                    self.metrics.tokens_per_second.observe((tokens - 1) / elapsed)

    async def collect(self, prompt: str, params: SamplingParams, started: float) -> Generation:
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        tokens = 0
        finish = "stop"
        async for chunk in self.sequence(prompt, params, started):
            parts.append(chunk.text)
            logprobs.extend(chunk.logprobs)
            tokens += chunk.tokens
            if chunk.finish_reason:
                finish = chunk.finish_reason
        return Generation("".join(parts), tokens, finish, logprobs)

    # -- request checks -----------------------------------------------------------------------------

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._tokenizer, fn, *args)

    def max_chars(self) -> int:
        return self.engine.context_length * self.settings.max_chars_per_token

    def check_length(self, chars: int, param: str) -> None:
        """Refuse, before tokenizing, a text that cannot fit the context however it tokenizes."""
        limit = self.max_chars()
        if chars > limit:
            per_token, context = self.settings.max_chars_per_token, self.engine.context_length
            raise RequestError(
                f"the {param} is {chars} characters; this server takes at most {limit} ({per_token} per "
                f"token of its {context}-token context, --context-length); shorten it",
                param=param,
            )

    async def count_tokens(self, text: str, param: str = "prompt") -> int:
        self.check_length(len(text), param)
        return await self._off_loop(self.engine.count_tokens, text)

    async def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The chat template over ``messages``, refused first when they cannot fit the context."""
        context = self.engine.context_length
        if len(messages) > context:
            raise RequestError(
                f"{len(messages)} messages cannot fit a {context}-token context; send fewer", param="messages"
            )
        self.check_length(sum(len(m.content) for m in messages), "messages")
        return await self._off_loop(self.engine.render_chat, messages)

    async def prepare(
        self, prompt: str, params: SamplingParams, prompt_tokens: int | None = None
    ) -> tuple[int, SamplingParams]:
        """Count the prompt, refuse one longer than the context, fit max_tokens into what is left."""
        if prompt_tokens is None:
            prompt_tokens = await self.count_tokens(prompt)
        self.check_context(prompt_tokens)
        room = self.engine.context_length - prompt_tokens
        if params.max_tokens > room:
            params = dataclasses.replace(params, max_tokens=room)
        return prompt_tokens, params

    def check_context(self, prompt_tokens: int) -> None:
        context = self.engine.context_length
        if prompt_tokens >= context:
            raise RequestError(
                f"the prompt is {prompt_tokens} tokens; this server's context is {context} tokens per "
                "sequence (--context-length); shorten the prompt",
                param="prompt",
            )

    def check_n(self, n: int) -> None:
        if n < 1:
            raise RequestError("n must be at least 1", param="n")
        if n > self.settings.max_n:
            raise RequestError(f"n {n} exceeds this server's limit of {self.settings.max_n} (--max-n)", "n")

    def check_model(self, model: str | None, param: str = "model") -> str | None:
        """The adapter choice (SamplingParams.adapter) of a request's ``model``, as vLLM reads it: absent
        (None or ""): every adapter at its strength, as KAITO applies them; the base model's name: the
        base model alone (on a server that names no adapters: the model as configured); an adapter's
        name: that adapter. Anything else: 404 naming what is served."""
        if not model:
            return None
        base, adapters = self.settings.served_model_name, self.settings.adapters
        if model == base:
            return "" if adapters else None
        if model in adapters:
            return model
        served = ", ".join(f"`{name}`" for name in (base, *adapters))
        raise RequestError(
            f"the model `{model}` does not exist; this server serves {served}", param=param, status=404
        )
