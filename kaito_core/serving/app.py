"""The inference HTTP server: KAITO's /chat, the OpenAI API, /health and /metrics over one Engine.

``create_app(engine, settings)`` returns the ASGI application (Starlette); ``kaito_core.serving.server.run``
serves it with uvicorn. The server owns policy (limits, queueing, authentication, health, metrics);
the engine owns the model.

Starlette rather than FastAPI: the handlers validate their bodies with the protocol's pydantic models
themselves (one function, one error format) and need nothing else FastAPI adds, while importing FastAPI
costs ~0.08 s more (its OpenAPI models), which every `kaito serve` start paid while the model loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaito_core.serving.admission import Admission, QueueFull
from kaito_core.serving.chat_template import ChatTemplateError
from kaito_core.serving.engine import Chunk, Engine, SamplingParams
from kaito_core.serving.metrics import ServerMetrics
from kaito_core.serving.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    KaitoChatRequest,
    RequestError,
    kaito_sampling,
)
from kaito_core.serving.settings import ServerSettings

log = logging.getLogger("kaito.serving")

_Body = TypeVar("_Body", bound=BaseModel)

WARMUP_PROMPT = "Hello"


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


@dataclasses.dataclass
class Generation:
    text: str
    completion_tokens: int
    finish_reason: str


class ServerState:
    """Everything the handlers share."""

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = ServerMetrics()
        self.admission = Admission(settings.max_concurrency, settings.queue_size)
        self.ready = False
        self.load_error: str | None = None

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
        if self.settings.on_ready is not None:
            try:
                self.settings.on_ready()
            except Exception as exc:  # a supervisor that went away must not take the server down
                log.warning("could not report readiness: %s", exc)

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.load_error:
            return 503, {"status": "Unhealthy", "error": self.load_error}
        if not self.ready:
            return 503, {"status": "Loading"}
        health = self.engine.health()
        if not health.alive:
            return 503, {"status": "Unhealthy", "error": health.error or "the engine stopped"}
        stalled = time.monotonic() - health.last_progress
        if health.running > 0 and stalled > self.settings.stall_timeout:
            return 503, {
                "status": "Unhealthy",
                "error": f"{health.running} sequences running but no decode step for {stalled:.0f}s",
            }
        return 200, {"status": "Healthy"}

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

    # -- one sequence -------------------------------------------------------------------------------

    async def sequence(self, prompt: str, params: SamplingParams, started: float) -> AsyncIterator[Chunk]:
        """The engine's stream for one sequence, with token and latency metrics."""
        first: float | None = None
        tokens = 0
        stream = self.engine.stream(prompt, params)
        try:
            async for chunk in stream:
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
        tokens = 0
        finish = "stop"
        async for chunk in self.sequence(prompt, params, started):
            parts.append(chunk.text)
            tokens += chunk.tokens
            if chunk.finish_reason:
                finish = chunk.finish_reason
        return Generation("".join(parts), tokens, finish)

    # -- shared request checks ----------------------------------------------------------------------

    def prepare(
        self, prompt: str, params: SamplingParams, prompt_tokens: int | None = None
    ) -> tuple[int, SamplingParams]:
        """Count the prompt, refuse one longer than the context, fit max_tokens into what is left."""
        if prompt_tokens is None:
            prompt_tokens = self.engine.count_tokens(prompt)
        self.check_context(prompt_tokens)
        context = self.engine.context_length
        room = context - prompt_tokens
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

    def check_model(self, model: str | None) -> None:
        if model and model != self.settings.served_model_name:
            raise RequestError(
                f"the model `{model}` does not exist; this server serves `{self.settings.served_model_name}`",
                param="model",
                status=404,
            )


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _error(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """One error shape for both APIs: ``detail`` (KAITO's, as FastAPI writes it) and OpenAI's ``error``."""
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    body = {"detail": message, "error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _parse_body(request: Request, model: type[_Body]) -> _Body:
    """The JSON body as ``model``; 422 naming every problem (and its field) otherwise."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        message = f"invalid request: body: malformed JSON ({reason})"
        raise RequestError(message, param="body", status=422) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in err.get('loc', ())) or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        ]
        message = "invalid request: " + "; ".join(problems)
        raise RequestError(message, param=problems[0].split(":")[0], status=422) from None


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_disconnected(request: Request, work: Awaitable[Any]) -> Any:
    """Run `work`; if the client goes away first, cancel it (which stops its sequences)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone


async def _merge(streams: list[AsyncIterator[Chunk]]) -> AsyncIterator[tuple[int, Chunk]]:
    """Interleave several sequences' chunks as they come (n > 1, or several completion prompts)."""
    if len(streams) == 1:
        async for chunk in streams[0]:
            yield 0, chunk
        return
    queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
            await queue.put((index, None))
        except Exception as exc:
            await queue.put((index, exc))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class _ReleasingStream(StreamingResponse):
    """Returns the admission slots however the response ends, even if the body never started."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class _CountRequests:
    """Pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects from the handlers)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 499  # the client went away before a response started

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            status = 500
            raise
        finally:
            self.metrics.requests.labels(ServerMetrics.endpoint(scope["path"]), str(status)).inc()


# --------------------------------------------------------------------------------------------------
# the application
# --------------------------------------------------------------------------------------------------


def create_app(engine: Engine, settings: ServerSettings) -> Starlette:
    state = ServerState(engine, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load_and_warm_up())
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await engine.close()

    keys = [k.encode() for k in settings.api_keys]

    async def authenticate(request: Request) -> None:
        if not keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip().encode()
        # Compare with every key, always: the time taken says nothing about which key nearly matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(presented, key)
        if scheme.lower() != "bearer" or not matched:
            raise RequestError("invalid or missing API key: send `Authorization: Bearer <key>`", status=401)

    routes: list[Route] = []

    def route(
        path: str, method: str, *, guarded: bool = False, body: type[BaseModel] | None = None
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Register a handler: the API key first when ``guarded``, then the JSON body parsed into
        ``body`` (the handler gets it and the request); a dict returned is sent as JSON."""

        def register(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def endpoint(request: Request) -> Response:
                if guarded:
                    await authenticate(request)
                if body is None:
                    result = await handler()
                else:
                    result = await handler(await _parse_body(request, body), request)
                return result if isinstance(result, Response) else JSONResponse(result)

            routes.append(Route(path, endpoint, methods=[method]))
            return handler

        return register

    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.message, exc.param, headers)

    async def _template_error(request: Request, exc: ChatTemplateError) -> JSONResponse:
        return _error(400, str(exc), "messages")

    async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return _error(429, str(exc), headers={"Retry-After": str(settings.retry_after)})

    async def _client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    async def _failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request to %s failed: %s: %s", request.url.path, type(exc).__name__, exc)
        return _error(500, f"generation failed: {exc}")

    async def _http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)  # unknown path (404), method not allowed (405)
        return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    def not_ready() -> JSONResponse | None:
        if state.ready:
            return None
        _, body = state.health()
        return _error(503, f"the model is not ready: {body.get('error') or body['status']}")

    # -- KAITO ------------------------------------------------------------------------------------

    @route("/", "GET")
    async def root() -> dict[str, str]:
        return {"message": "Server is running"}

    @route("/health", "GET")
    async def health() -> JSONResponse:
        code, body = state.health()
        return JSONResponse(body, status_code=code)

    @route("/metrics", "GET")
    async def metrics() -> Response:
        state.update_gauges()
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @route("/chat", "POST", guarded=True, body=KaitoChatRequest)
    async def chat(body: KaitoChatRequest, request: Request) -> Any:
        if (unready := not_ready()) is not None:
            return unready
        started = time.monotonic()
        if body.prompt is not None:
            prompt = body.prompt
        elif body.messages is not None:
            if not body.messages:
                raise RequestError("Conversational parameter messages required", param="messages")
            prompt = engine.render_chat([m.to_chat() for m in body.messages])
        else:
            raise RequestError("Text generation parameter prompt required", param="prompt")
        if not prompt:
            raise RequestError("Text generation parameter prompt required", param="prompt")
        # `prefix` is generated from but not returned (the transformers pipeline's behaviour)
        model_input = (body.prefix or "") + prompt
        prompt_tokens = engine.count_tokens(model_input)
        state.check_context(prompt_tokens)  # before max_length arithmetic: name the real limit
        params = kaito_sampling(body.generate_kwargs, prompt_tokens, settings.max_tokens_cap)
        _, params = state.prepare(model_input, params, prompt_tokens)
        await state.admit(1)
        state.metrics.prompt_tokens.inc(prompt_tokens)
        try:
            work = state.collect(model_input, params, started)
            result: Generation = await _unless_disconnected(request, work)
        finally:
            state.release(1)
        # return_full_text applies to `prompt` (the transformers pipeline's behaviour); for `messages`
        # the answer is the reply alone, not the rendered template.
        text = prompt + result.text if body.prompt is not None and body.return_full_text else result.text
        return {"Result": text}

    # -- OpenAI -----------------------------------------------------------------------------------

    @route("/v1/models", "GET", guarded=True)
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": settings.served_model_name,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "kaito",
                    "max_model_len": engine.context_length,
                }
            ],
        }

    async def run_openai(
        request: Request,
        prompts: list[str],
        params: SamplingParams,
        n: int,
        stream: bool,
        include_usage: bool,
        render: Callable[[str, int, Generation | None, Chunk | None, bool], dict[str, Any]],
        usage_chunk: Callable[[dict[str, int]], dict[str, Any]],
        prefix: Callable[[int], dict[str, Any] | None],
    ) -> Any:
        started = time.monotonic()
        state.check_n(n)
        prepared = [state.prepare(p, params) for p in prompts]
        prompt_tokens = sum(t for t, _ in prepared) * n
        jobs = [(prompts[i], prepared[i][1]) for i in range(len(prompts)) for _ in range(n)]
        slots = len(jobs)
        if slots > settings.max_concurrency:
            raise RequestError(
                f"this request needs {slots} sequences; the server runs at most {settings.max_concurrency} "
                "at once (--max-batch)",
                param="n",
            )
        await state.admit(slots)
        state.metrics.prompt_tokens.inc(prompt_tokens)
        if not stream:
            try:
                results: list[Generation] = await _unless_disconnected(
                    request, asyncio.gather(*(state.collect(p, sp, started) for p, sp in jobs))
                )
            finally:
                state.release(slots)
            completion = sum(r.completion_tokens for r in results)
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            }
            body = render("", 0, None, None, False)
            body["choices"] = [render("", i, r, None, False)["choices"][0] for i, r in enumerate(results)]
            body["usage"] = usage
            return body

        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                state.release(slots)

        async def events() -> AsyncIterator[bytes]:
            completion = 0
            try:
                try:
                    for i in range(slots):
                        if (first := prefix(i)) is not None:
                            yield _sse(first)
                    streams = [state.sequence(p, sp, started) for p, sp in jobs]
                    async for index, chunk in _merge(streams):
                        completion += chunk.tokens
                        if chunk.text or chunk.finish_reason:
                            yield _sse(render(chunk.text, index, None, chunk, True))
                except Exception as exc:  # the engine failed mid-stream: say so in the stream, then end it
                    log.exception("generation failed")
                    message = f"generation failed: {exc}"
                    yield _sse({"error": {"message": message, "type": "server_error", "code": 500}})
                    yield b"data: [DONE]\n\n"
                    return
                if include_usage:
                    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                             "total_tokens": prompt_tokens + completion}  # fmt: skip
                    yield _sse(usage_chunk(usage))
                yield b"data: [DONE]\n\n"
            finally:
                release_once()

        return _ReleasingStream(events(), release_once)

    @route("/v1/chat/completions", "POST", guarded=True, body=ChatCompletionRequest)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        if (unready := not_ready()) is not None:
            return unready
        state.check_model(body.model)
        prompt = engine.render_chat([m.to_chat() for m in body.messages])
        params = body.sampling(default_max_tokens=settings.max_tokens_cap, cap=settings.max_tokens_cap)
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        name = settings.served_model_name

        def render(
            text: str, index: int, result: Generation | None, chunk: Chunk | None, streaming: bool
        ) -> dict[str, Any]:
            if streaming:
                assert chunk is not None
                delta = {"content": text} if text else {}
                return {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": name,
                    "choices": [
                        {
                            "index": index,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": chunk.finish_reason,
                        }
                    ],
                }
            choices = []
            if result is not None:
                choices = [
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": result.text},
                        "logprobs": None,
                        "finish_reason": result.finish_reason,
                    }
                ]
            return {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": name,
                "choices": choices,
            }

        def usage_chunk(usage: dict[str, int]) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [],
                "usage": usage,
            }

        def prefix(index: int) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await run_openai(
            request, [prompt], params, body.n, body.stream, include_usage, render, usage_chunk, prefix
        )

    @route("/v1/completions", "POST", guarded=True, body=CompletionRequest)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        if (unready := not_ready()) is not None:
            return unready
        state.check_model(body.model)
        if body.logprobs is not None:
            raise RequestError("logprobs are not supported by this server", param="logprobs")
        if body.suffix:
            raise RequestError("suffix (insertion) is not supported by this server", param="suffix")
        prompts = body.prompts()
        params = body.sampling(default_max_tokens=16, cap=settings.max_tokens_cap)
        ident = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        name = settings.served_model_name
        n = body.n
        echo = body.echo

        def render(
            text: str, index: int, result: Generation | None, chunk: Chunk | None, streaming: bool
        ) -> dict[str, Any]:
            if streaming:
                assert chunk is not None
                return {
                    "id": ident,
                    "object": "text_completion",
                    "created": created,
                    "model": name,
                    "choices": [
                        {"index": index, "text": text, "logprobs": None, "finish_reason": chunk.finish_reason}
                    ],
                }
            choices = []
            if result is not None:
                full = prompts[index // n] + result.text if echo else result.text
                choices = [
                    {"index": index, "text": full, "logprobs": None, "finish_reason": result.finish_reason}
                ]
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": choices,
            }

        def usage_chunk(usage: dict[str, int]) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [],
                "usage": usage,
            }

        def prefix(index: int) -> dict[str, Any] | None:
            if not echo:
                return None
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [
                    {"index": index, "text": prompts[index // n], "logprobs": None, "finish_reason": None}
                ],
            }

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await run_openai(
            request, prompts, params, n, body.stream, include_usage, render, usage_chunk, prefix
        )

    handlers: dict[Any, Callable[..., Any]] = {
        RequestError: _request_error,
        ChatTemplateError: _template_error,
        QueueFull: _queue_full,
        ClientGone: _client_gone,
        HTTPException: _http_error,
        Exception: _failed,  # Starlette runs this one outermost, as the 500 page
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_CountRequests, metrics=state.metrics)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.kaito = state
    return app
