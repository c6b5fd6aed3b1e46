"""The OpenAI API: /v1/models, /v1/chat/completions and /v1/completions, streamed or whole.

Both generation routes run the same way (:func:`generate`): check ``n`` and the context, take one
admission slot per sequence, then either gather every sequence or stream their chunks as server-sent
events. They differ only in the shapes they answer with, which a renderer builds from the
response models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel
from starlette.requests import Request
from starlette.routing import Route

from kaito_core.plugins import Chunk, RequestError, SamplingParams
from kaito_core.serving import sse
from kaito_core.serving.protocol import ChatCompletionRequest, CompletionRequest
from kaito_core.serving.responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    ModelCard,
    ModelList,
    Usage,
)
from kaito_core.serving.state import Generation, ServerState
from kaito_core.serving.web import ApiKeys, ReleasingStream, error_response, json_route, unless_disconnected


class Renderer(Protocol):
    """The response shapes of one route."""

    def opening(self, index: int) -> BaseModel | None:
        """The first event of sequence ``index`` in a stream, if the shape has one."""

    def chunk(self, index: int, chunk: Chunk) -> BaseModel: ...

    def whole(self, results: list[Generation], usage: Usage) -> BaseModel: ...

    def usage(self, usage: Usage) -> BaseModel:
        """The stream's last event when the client asked for usage (``stream_options``)."""


@dataclass(frozen=True)
class ChatRenderer:
    id: str
    created: int
    model: str
    logprobs: bool = False  # the request asked for them

    def _chunk(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices,
                                   usage=usage)  # fmt: skip

    def opening(self, index: int) -> BaseModel:
        return self._chunk([ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""))])

    def chunk(self, index: int, chunk: Chunk) -> BaseModel:
        delta = ChatDelta(content=chunk.text or None)
        logprobs = ChoiceLogprobs.of(chunk.logprobs) if self.logprobs and chunk.logprobs else None
        choice = ChatChunkChoice(
            index=index, delta=delta, logprobs=logprobs, finish_reason=chunk.finish_reason
        )
        return self._chunk([choice])

    def whole(self, results: list[Generation], usage: Usage) -> BaseModel:
        choices = [
            ChatChoice(
                index=i,
                message=AssistantMessage(content=r.text),
                logprobs=ChoiceLogprobs.of(r.logprobs) if self.logprobs else None,
                finish_reason=r.finish_reason,
            )
            for i, r in enumerate(results)
        ]
        return ChatCompletion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def usage(self, usage: Usage) -> BaseModel:
        return self._chunk([], usage)


@dataclass(frozen=True)
class CompletionRenderer:
    id: str
    created: int
    model: str
    prompts: list[str]
    n: int
    echo: bool
    logprobs: bool = False  # the request asked for them
    #: streamed: where the next token's text starts in each sequence's text (``text_offset``)
    offsets: dict[int, int] = field(default_factory=dict)

    def _completion(self, choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)

    def opening(self, index: int) -> BaseModel | None:
        if not self.echo:
            return None
        return self._completion([CompletionChoice(index=index, text=self.prompts[index // self.n])])

    def chunk(self, index: int, chunk: Chunk) -> BaseModel:
        logprobs = None
        if self.logprobs and chunk.logprobs:
            offset = self.offsets.get(index, 0)
            logprobs = CompletionLogprobs.of(chunk.logprobs, offset)
            self.offsets[index] = offset + sum(len(entry.token) for entry in chunk.logprobs)
        return self._completion(
            [
                CompletionChoice(
                    index=index, text=chunk.text, logprobs=logprobs, finish_reason=chunk.finish_reason
                )
            ]
        )

    def whole(self, results: list[Generation], usage: Usage) -> BaseModel:
        choices = [
            CompletionChoice(
                index=i,
                text=(self.prompts[i // self.n] + r.text) if self.echo else r.text,
                logprobs=CompletionLogprobs.of(r.logprobs) if self.logprobs else None,
                finish_reason=r.finish_reason,
            )
            for i, r in enumerate(results)
        ]
        return self._completion(choices, usage)

    def usage(self, usage: Usage) -> BaseModel:
        return self._completion([], usage)


async def generate(
    state: ServerState,
    request: Request,
    prompts: list[str],
    params: SamplingParams,
    n: int,
    stream: bool,
    include_usage: bool,
    renderer: Renderer,
) -> Any:
    """Every prompt ``n`` times: admitted together, then gathered or streamed."""
    started = time.monotonic()
    state.check_n(n)
    slots = len(prompts) * n
    limit = state.settings.max_concurrency
    if slots > limit:  # before any prompt is tokenized
        raise RequestError(
            f"this request needs {slots} sequences; the server runs at most {limit} at once (--max-batch)",
            param="n",
        )
    prepared = [await state.prepare(p, params) for p in prompts]
    prompt_tokens = sum(tokens for tokens, _ in prepared) * n
    jobs = [(prompts[i], prepared[i][1]) for i in range(len(prompts)) for _ in range(n)]
    await unless_disconnected(request, state.admit(slots))  # a client that leaves the queue frees it
    state.metrics.prompt_tokens.inc(prompt_tokens)
    if not stream:
        try:
            results: list[Generation] = await unless_disconnected(
                request, asyncio.gather(*(state.collect(p, sp, started) for p, sp in jobs))
            )
        finally:
            state.release(slots)
        return renderer.whole(results, Usage.of(prompt_tokens, sum(r.completion_tokens for r in results)))

    released = False
    completion_tokens = 0

    def release_once() -> None:
        nonlocal released
        if not released:
            released = True
            state.release(slots)

    async def body() -> AsyncIterator[BaseModel]:
        nonlocal completion_tokens
        try:
            for index in range(slots):
                if (opening := renderer.opening(index)) is not None:
                    yield opening
            async for index, chunk in sse.merge([state.sequence(p, sp, started) for p, sp in jobs]):
                completion_tokens += chunk.tokens
                if chunk.text or chunk.finish_reason or chunk.logprobs:  # held-back text's tokens too
                    yield renderer.chunk(index, chunk)
        finally:
            release_once()

    def closing() -> list[BaseModel]:
        return [renderer.usage(Usage.of(prompt_tokens, completion_tokens))] if include_usage else []

    return ReleasingStream(sse.events(body(), closing, state.cut_streams), release_once)


def routes(state: ServerState, keys: ApiKeys) -> list[Route]:
    settings = state.settings
    engine = state.engine

    def not_ready() -> Any:
        message = state.not_ready_message()
        return None if message is None else error_response(503, message)

    async def models() -> ModelList:
        # as vLLM lists them: the base model, then each LoRA adapter with the base as its parent
        created, base = int(time.time()), settings.served_model_name
        cards = [ModelCard(id=base, created=created, max_model_len=engine.context_length, root=base)]
        cards += [
            ModelCard(id=name, created=created, max_model_len=engine.context_length, root=name, parent=base)
            for name in settings.adapters
        ]
        return ModelList(data=cards)

    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        if (unready := not_ready()) is not None:
            return unready
        adapter = state.check_model(body.model)
        params = body.sampling(default_max_tokens=settings.max_tokens_cap, cap=settings.max_tokens_cap)
        params = dataclasses.replace(params, adapter=adapter)
        prompt = await state.render_chat([m.to_chat() for m in body.messages])
        # vLLM answers with the name asked for
        ident, name = f"chatcmpl-{uuid.uuid4().hex}", body.model or settings.served_model_name
        renderer = ChatRenderer(ident, int(time.time()), name, params.logprobs is not None)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await generate(state, request, [prompt], params, body.n, body.stream, include_usage, renderer)

    async def completions(body: CompletionRequest, request: Request) -> Any:
        if (unready := not_ready()) is not None:
            return unready
        adapter = state.check_model(body.model)
        if body.suffix:
            raise RequestError("suffix (insertion) is not supported by this server", param="suffix")
        prompts = body.prompts()
        params = dataclasses.replace(body.sampling(default_max_tokens=16, cap=settings.max_tokens_cap),
                                     adapter=adapter)  # fmt: skip
        ident, name = f"cmpl-{uuid.uuid4().hex}", body.model or settings.served_model_name
        renderer = CompletionRenderer(
            ident, int(time.time()), name, prompts, body.n, body.echo, params.logprobs is not None
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await generate(state, request, prompts, params, body.n, body.stream, include_usage, renderer)

    limit = settings.max_body_bytes
    return [
        json_route("/v1/models", "GET", models, keys=keys),
        json_route(
            "/v1/chat/completions",
            "POST",
            chat_completions,
            body=ChatCompletionRequest,
            keys=keys,
            max_body=limit,
        ),
        json_route("/v1/completions", "POST", completions, body=CompletionRequest, keys=keys, max_body=limit),
    ]
