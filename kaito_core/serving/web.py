"""HTTP plumbing the routes share: one error shape, JSON bodies validated by the protocol models, the
API key, cancellation when a client goes away, request counting, and a streaming response that hands
its admission slots back however it ends."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaito_core.plugins import RequestError
from kaito_core.serving import jsonbody
from kaito_core.serving.metrics import ServerMetrics

Body = TypeVar("Body", bound=BaseModel)
Handler = Callable[..., Awaitable[Any]]


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


def error_response(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """One error shape for both APIs: ``detail`` (KAITO's, as FastAPI writes it) and OpenAI's ``error``."""
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    body = {"detail": message, "error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


#: Bodies larger than this are parsed and validated on a worker thread, not on the event loop.
_INLINE_PARSE_BYTES = 64 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from Content-Length
    before anything is read, or while reading one that does not say."""
    declared = request.headers.get("content-length")
    too_large = f"the request body exceeds this server's limit of {limit} bytes (--max-body-bytes)"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(too_large, "body", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(too_large, "body", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _validate(raw: bytes, model: type[Body]) -> Body:
    try:
        data = jsonbody.loads(raw)
    except jsonbody.BodyError as exc:
        raise RequestError(f"invalid request: {exc.path}: {exc.message}", exc.path, 422) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in err.get('loc', ())) or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        ]
        raise RequestError(
            "invalid request: " + "; ".join(problems), problems[0].split(":")[0], 422
        ) from None


async def parse_body(request: Request, model: type[Body], limit: int) -> Body:
    """The JSON body as ``model``; 413 over ``limit`` bytes, 422 naming every problem (and its field)."""
    raw = await read_body(request, limit)
    if len(raw) <= _INLINE_PARSE_BYTES:
        return _validate(raw, model)
    return await asyncio.to_thread(_validate, raw, model)


class ApiKeys:
    """Bearer keys; none configured means no authentication."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [key.encode() for key in keys]

    def check(self, request: Request) -> None:
        if not self._keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip().encode()
        # Compare with every key, always: the time taken says nothing about which key nearly matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        if scheme.lower() != "bearer" or not matched:
            raise RequestError("invalid or missing API key: send `Authorization: Bearer <key>`", status=401)


def json_route(
    path: str,
    method: str,
    handler: Handler,
    *,
    body: type[BaseModel] | None = None,
    keys: ApiKeys | None = None,
    max_body: int = 4 * 1024 * 1024,
) -> Route:
    """A route: the API key first (when ``keys``), then the JSON body (at most ``max_body`` bytes)
    parsed into ``body`` (the handler gets it and the request); a pydantic model or dict returned is
    sent as JSON."""

    async def endpoint(request: Request) -> Response:
        if keys is not None:
            keys.check(request)
        if body is None:
            result = await handler()
        else:
            result = await handler(await parse_body(request, body, max_body), request)
        if isinstance(result, Response):
            return result
        if isinstance(result, BaseModel):
            return Response(result.model_dump_json(), media_type="application/json")
        return JSONResponse(result)

    return Route(path, endpoint, methods=[method])


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[Any]) -> Any:
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


class ReleasingStream(StreamingResponse):
    """Server-sent events that return the admission slots however the response ends, even if the body
    never started."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class CountRequests:
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
