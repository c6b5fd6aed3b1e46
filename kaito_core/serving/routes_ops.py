"""What a kubelet and Prometheus ask: ``GET /health`` (200 only once the model generated, 503 while it
loads, after a failure or when decoding stalls) and ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaito_core.serving.state import ServerState
from kaito_core.serving.web import json_route


def routes(state: ServerState) -> list[Route]:
    async def health() -> JSONResponse:
        code, body = state.health()
        return JSONResponse(body, status_code=code)

    async def metrics() -> Response:
        state.update_gauges()
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [json_route("/health", "GET", health), json_route("/metrics", "GET", metrics)]
