"""The inference HTTP server: KAITO's /chat, the OpenAI API, /health and /metrics over one Engine.

``create_app(engine, settings)`` returns the ASGI application (Starlette); ``kaito_core.serving.server.run``
serves it with uvicorn. The server owns policy (limits, queueing, authentication, health, metrics);
the engine owns the model. The routes live by API: ``routes_kaito`` (/, /chat), ``routes_openai``
(/v1/...), ``routes_ops`` (/health, /metrics); what they share is in ``state`` and ``web``.

Starlette rather than FastAPI: the handlers validate their bodies with the protocol's pydantic models
themselves (one function, one error format) and need nothing else FastAPI adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kaito_core.plugins import ChatTemplateError, Engine, RequestError
from kaito_core.serving import routes_kaito, routes_openai, routes_ops
from kaito_core.serving.admission import QueueFull
from kaito_core.serving.settings import ServerSettings
from kaito_core.serving.state import ServerState
from kaito_core.serving.web import ApiKeys, ClientGone, CountRequests, error_response

log = logging.getLogger("kaito.serving")


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
            state.close()

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.param, headers)

    async def template_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, str(exc), "messages")

    async def queue_full(request: Request, exc: Exception) -> JSONResponse:
        return error_response(429, str(exc), headers={"Retry-After": str(settings.retry_after)})

    async def client_gone(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)  # unknown path (404), method not allowed (405)
        return error_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request to %s failed: %s: %s", request.url.path, type(exc).__name__, exc)
        return error_response(500, f"generation failed: {exc}")

    handlers: dict[Any, Callable[..., Any]] = {
        RequestError: request_error,
        ChatTemplateError: template_error,
        QueueFull: queue_full,
        ClientGone: client_gone,
        HTTPException: http_error,
        Exception: failed,  # Starlette runs this one outermost, as the 500 page
    }
    keys = ApiKeys(settings.api_keys)
    app = Starlette(
        routes=[
            *routes_ops.routes(state),
            *routes_kaito.routes(state, keys),
            *routes_openai.routes(state, keys),
        ],
        middleware=[Middleware(CountRequests, metrics=state.metrics)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.kaito = state
    return app
