"""The vLLM Engine: vLLM's OpenAI server as a child process, streamed from over loopback HTTP.

`kaito serve` keeps the public API (/chat, the OpenAI endpoints, limits, API key, metrics, /health);
this Engine turns each generation into a streaming ``/v1/completions`` call to vLLM, counts tokens
with vLLM's ``/tokenize`` and reports the child's health: dead process, failing /health, or (through
``last_progress``) a stalled stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from kaito_core.plugins import (
    ChatMessage,
    ChatTemplate,
    Chunk,
    EngineConfig,
    EngineHealth,
    RequestError,
    SamplingParams,
    TokenLogprob,
)
from kaito_runtime_vllm.args import server_args
from kaito_runtime_vllm.chat import load_template
from kaito_runtime_vllm.options import engine_options_from, settings_from
from kaito_runtime_vllm.upstream import ChildServer, free_port

#: Consecutive failed polls before the engine reports itself unhealthy (one slow poll is not death).
HEALTH_FAILURES = 2


class UpstreamError(RequestError):
    """vLLM answered with an error (its 4xx are passed on as they are), failed (502) or is gone (503).

    A RequestError, so the server answers with this status and message instead of a bare 500.
    """

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message, status=status)


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(data)


class VllmEngine:
    """A loaded vLLM server serving many concurrent streams (vLLM batches them itself)."""

    def __init__(self, config: EngineConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.settings = settings_from(config, environ)
        self.options = engine_options_from(config, environ)
        self.health_interval = self.options.health_interval
        self._context_length = config.context_length or self.settings.max_model_len
        self._health = EngineHealth(loaded=False)
        self._child: ChildServer | None = None
        self._base_url = (self.options.upstream_url or "").rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self._sync: httpx.Client | None = None
        self._template: ChatTemplate | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._poll_failures = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def model(self) -> str:
        """The name requests are sent to vLLM under: the adapter's, or the base model's."""
        return self.options.adapter or self.settings.served_model_name

    def model_for(self, params: SamplingParams) -> str:
        """The name one request goes to vLLM under (``SamplingParams.adapter``): the configured
        default, the base model (""), or the adapter it names (the server checked it is served)."""
        if params.adapter is None:
            return self.model
        return params.adapter or self.settings.served_model_name

    @property
    def child(self) -> ChildServer | None:
        return self._child

    def command(self, port: int) -> list[str]:
        """The child's argv for an internal port on 127.0.0.1."""
        if self.options.upstream_command is not None:
            return [part.format(host="127.0.0.1", port=port) for part in self.options.upstream_command]
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--host", "127.0.0.1", "--port", str(port),
            *server_args(self.settings),
        ]  # fmt: skip

    async def load(self) -> None:
        self._template = self._load_template()
        if not self._base_url:
            if self.options.upstream_command is None and importlib.util.find_spec("vllm") is None:
                raise RuntimeError(
                    "vLLM is not installed here: install it with `pip install 'kaito-runtime-vllm[vllm]'` "
                    "on a machine with an NVIDIA GPU, or choose the llamacpp runtime"
                )
            port = free_port()
            self._child = ChildServer(self.command(port))  # our environment (HF_*, CUDA_*, VLLM_*)
            await self._child.start()
            self._base_url = f"http://127.0.0.1:{port}"
        # No timeout on reads: a generation streams for as long as it streams; connects are loopback.
        self._client = httpx.AsyncClient(base_url=self._base_url, timeout=httpx.Timeout(None, connect=10))
        self._sync = httpx.Client(base_url=self._base_url, timeout=httpx.Timeout(60, connect=10))
        await self._wait_ready()
        await self._read_model_card()
        self._health = EngineHealth(loaded=True, alive=True)
        if self._child is not None:
            self._watchers.append(asyncio.create_task(self._watch_child(self._child)))
        self._watchers.append(asyncio.create_task(self._poll_health()))

    async def _wait_ready(self) -> None:
        assert self._client is not None
        deadline = time.monotonic() + self.options.startup_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._child is not None and self._child.returncode is not None:
                await self._child.wait()
                raise RuntimeError(f"vLLM failed to start: {self._child.describe_exit()}")
            try:
                response = await self._client.get("/health", timeout=5)
                if response.status_code == 200:
                    return
                last = f"/health answered {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.25)
        raise RuntimeError(
            f"vLLM did not become ready within {self.options.startup_timeout:.0f} s ({last}); raise "
            "startup_timeout for large models"
        )

    async def _read_model_card(self) -> None:
        assert self._client is not None
        response = await self._client.get("/v1/models")
        if response.status_code != 200:
            message = _error_message(response.content)
            raise RuntimeError(f"vLLM /v1/models answered {response.status_code}: {message}")
        cards = {card.get("id"): card for card in response.json().get("data", [])}
        if self.model not in cards:
            raise RuntimeError(
                f"vLLM serves {sorted(cards)}, not {self.model!r}; check served_model_name/adapters"
            )
        base = cards.get(self.settings.served_model_name) or cards[self.model]
        reported = int(base.get("max_model_len") or 0)
        self._context_length = reported or self._context_length

    async def _watch_child(self, child: ChildServer) -> None:
        await child.wait()
        self._health.alive = False
        self._health.error = child.describe_exit()

    async def _poll_health(self) -> None:
        assert self._client is not None
        while True:
            await asyncio.sleep(self.health_interval)
            if self._child is not None and self._child.returncode is not None:
                return  # _watch_child reports it
            try:
                response = await self._client.get("/health", timeout=max(self.health_interval, 5))
                ok, why = response.status_code == 200, f"vLLM /health answered {response.status_code}"
            except httpx.HTTPError as exc:
                ok, why = False, f"vLLM /health failed: {type(exc).__name__}: {exc}"
            self._poll_failures = 0 if ok else self._poll_failures + 1
            if ok and self._health.error and self._health.error.startswith("vLLM /health"):
                self._health.alive, self._health.error = True, None
            elif self._poll_failures >= HEALTH_FAILURES:
                self._health.alive, self._health.error = False, why

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(BaseException):
                await task
        self._watchers.clear()
        if self._client is not None:
            await self._client.aclose()
        if self._sync is not None:
            self._sync.close()
        if self._child is not None:
            await self._child.stop()
        self._health.loaded = False

    def health(self) -> EngineHealth:
        return self._health

    # ------------------------------------------------------------------ text

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        if self._template is None:
            self._template = self._load_template()
        return self._template.render(messages)

    def _check_alive(self) -> None:
        if not self._health.alive:
            raise UpstreamError(f"vLLM is not serving: {self._health.error}", status=503)

    def _load_template(self) -> ChatTemplate:
        override = self.config.chat_template or self.options.chat_template
        return load_template(self.config.model_path, override)

    def _special_tokens(self, prompt: str) -> bool:
        """False when the prompt already starts with BOS (a rendered chat template): vLLM would add a
        second one, as its own /v1/chat/completions avoids with add_special_tokens=False."""
        bos = self._template.bos_token if self._template else ""
        return not (bos and prompt.startswith(bos))

    def count_tokens(self, text: str) -> int:
        # Blocking, but a loopback call to vLLM's tokenizer (microseconds of work): the count is then
        # exactly what vLLM will see, for any tokenizer vLLM supports.
        if self._sync is None:
            raise RuntimeError("count_tokens called before load()")
        self._check_alive()
        body = {"model": self.model, "prompt": text, "add_special_tokens": self._special_tokens(text)}
        try:
            response = self._sync.post("/tokenize", json=body)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"vLLM /tokenize failed: {type(exc).__name__}: {exc}", status=503) from exc
        if response.status_code != 200:
            message = _error_message(response.content)
            raise UpstreamError(f"vLLM /tokenize answered {response.status_code}: {message}")
        return int(response.json()["count"])

    def request_body(self, prompt: str, params: SamplingParams) -> dict[str, Any]:
        """The ``/v1/completions`` body for a prompt and the server's SamplingParams."""
        body: dict[str, Any] = {
            "model": self.model_for(params),
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": 0.0 if params.greedy else params.temperature,
            "top_p": 1.0 if params.greedy else params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if not params.greedy and params.top_k > 0:
            body["top_k"] = params.top_k
        if params.min_p:
            body["min_p"] = params.min_p
        if params.min_tokens:
            body["min_tokens"] = params.min_tokens
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if getattr(params, "ignore_eos", False):
            body["ignore_eos"] = True
        if not self._special_tokens(prompt):
            body["add_special_tokens"] = False
        if params.logprobs is not None:  # vLLM's own (raw logits, by default), read back by _events
            body["logprobs"] = params.logprobs
        # typical_p has no vLLM counterpart; the server's protocol layer documents it as ignored.
        return body

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        if self._client is None:
            raise RuntimeError("stream called before load()")
        self._check_alive()
        if params.json_schema is not None:
            raise RequestError(
                "response_format json_object/json_schema is not supported by the vllm runtime of this server",
                param="response_format",
            )
        body = self.request_body(prompt, params)
        self._health.running += 1
        try:
            async with self._client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    message = _error_message(await response.aread())
                    if 400 <= response.status_code < 500:
                        raise UpstreamError(message, response.status_code)
                    raise UpstreamError(f"vLLM answered {response.status_code}: {message}")
                async for chunk in self._events(response, params.logprobs or 0):
                    self._health.last_progress = time.monotonic()
                    yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamError(f"vLLM connection failed mid-request: {type(exc).__name__}: {exc}") from exc
        finally:
            self._health.running -= 1

    async def _events(self, response: httpx.Response, top: int = 0) -> AsyncIterator[Chunk]:
        """Parse vLLM's SSE: one JSON per ``data:`` line, usage in the last one, then ``[DONE]``.

        Each text delta counts one token (vLLM emits one per decode step), or as many as its
        log-probabilities list when they were asked for (a delta whose text vLLM holds back still
        carries its tokens'); the final chunk settles the total with the usage vLLM reports, so the
        server's token counts are exact.
        """
        counted = 0
        final: tuple[str, str, tuple[TokenLogprob, ...]] | None = None
        usage: int | None = None
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            event = json.loads(payload)
            if "error" in event or event.get("object") == "error":  # newer and older vLLM error bodies
                raise UpstreamError(f"vLLM failed mid-stream: {_error_message(payload.encode())}")
            if event.get("usage"):
                usage = int(event["usage"].get("completion_tokens") or 0)
            for choice in event.get("choices") or []:
                text, reason = choice.get("text") or "", choice.get("finish_reason")
                logprobs = _logprobs(choice.get("logprobs"), top)
                if reason is not None:
                    final = (text, reason, logprobs)
                elif text or logprobs:
                    counted += len(logprobs) or 1
                    yield Chunk(text=text, tokens=len(logprobs) or 1, logprobs=logprobs)
        if final is None:
            raise UpstreamError("vLLM ended the stream without a finish_reason")
        text, reason, logprobs = final
        total = usage if usage is not None else counted + (len(logprobs) or (1 if text else 0))
        yield Chunk(text=text, tokens=max(total - counted, 0), finish_reason=reason, logprobs=logprobs)


def _logprobs(legacy: Any, top: int) -> tuple[TokenLogprob, ...]:
    """vLLM's completions ``logprobs`` (parallel lists; ``top_logprobs`` maps up to N + 1 token texts,
    the chosen one among them, to their logprobs) as TokenLogprobs with the N most likely. vLLM's
    legacy shape has no bytes: a token's are the UTF-8 of its text as vLLM decoded it."""
    if not isinstance(legacy, dict):
        return ()
    tokens = legacy.get("tokens") or []
    values = legacy.get("token_logprobs") or []
    tops = legacy.get("top_logprobs") or []
    entries = []
    for i, token in enumerate(tokens):
        alternatives = (tops[i] if i < len(tops) else None) or {}
        ranked = sorted(alternatives.items(), key=lambda item: -item[1])[:top]
        value = values[i] if i < len(values) and values[i] is not None else float("-inf")
        best = tuple(TokenLogprob(t, float(v), tuple(t.encode())) for t, v in ranked)
        entries.append(TokenLogprob(token, float(value), tuple(token.encode()), best))
    return tuple(entries)
