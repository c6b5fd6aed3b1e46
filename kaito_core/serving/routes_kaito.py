"""KAITO's own API: ``GET /`` and ``POST /chat`` (a prompt or messages, with transformers-style
``generate_kwargs``), as KAITO's inference server answers them."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from kaito_core.plugins import RequestError
from kaito_core.serving.protocol import KaitoChatRequest, kaito_sampling
from kaito_core.serving.responses import KaitoChatResponse
from kaito_core.serving.state import Generation, ServerState
from kaito_core.serving.web import ApiKeys, error_response, json_route, unless_disconnected


def routes(state: ServerState, keys: ApiKeys) -> list[Route]:
    settings = state.settings

    async def root() -> dict[str, str]:
        return {"message": "Server is running"}

    async def chat(body: KaitoChatRequest, request: Request) -> Any:
        if (message := state.not_ready_message()) is not None:
            return error_response(503, message)
        started = time.monotonic()
        adapter = "" if body.adapter == "" else state.check_model(body.adapter, param="adapter")
        if body.prompt is not None:
            prompt = body.prompt
        elif body.messages is not None:
            if not body.messages:
                raise RequestError("Conversational parameter messages required", param="messages")
            prompt = await state.render_chat([m.to_chat() for m in body.messages])
        else:
            raise RequestError("Text generation parameter prompt required", param="prompt")
        if not prompt:
            raise RequestError("Text generation parameter prompt required", param="prompt")
        # `prefix` is generated from but not returned (the transformers pipeline's behaviour)
        model_input = (body.prefix or "") + prompt
        prompt_tokens = await state.count_tokens(model_input)
        state.check_context(prompt_tokens)  # before max_length arithmetic: name the real limit
        params = kaito_sampling(body.generate_kwargs, prompt_tokens, settings.max_tokens_cap)
        params = dataclasses.replace(params, adapter=adapter)
        _, params = await state.prepare(model_input, params, prompt_tokens)
        await unless_disconnected(request, state.admit(1))  # a client that leaves the queue frees it
        state.metrics.prompt_tokens.inc(prompt_tokens)
        try:
            result: Generation = await unless_disconnected(
                request, state.collect(model_input, params, started)
            )
        finally:
            state.release(1)
        # return_full_text applies to `prompt` (the transformers pipeline's behaviour); for `messages`
        # the answer is the reply alone, not the rendered template.
        text = prompt + result.text if body.prompt is not None and body.return_full_text else result.text
        return KaitoChatResponse(Result=text)

    return [
        json_route("/", "GET", root),
        json_route("/chat", "POST", chat, body=KaitoChatRequest, keys=keys, max_body=settings.max_body_bytes),
    ]
