"""Response bodies of KAITO's /chat and of the OpenAI API (the shapes the official client parses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from kaito_core.plugins import TokenLogprob


def _absent_when_none(value: object) -> bool:
    return value is None


class KaitoChatResponse(BaseModel):
    Result: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "kaito"
    root: str | None = None
    parent: str | None = None  # a LoRA adapter's base model (vLLM's field)
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- log-probabilities -------------------------------------------------------------------------------

#: What OpenAI (and vLLM) report for a token whose probability is zero (JSON has no -Infinity).
LOGPROB_FLOOR = -9999.0


def _finite(logprob: float) -> float:
    return max(logprob, LOGPROB_FLOOR)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(BaseModel):
    """OpenAI's ``ChatCompletionTokenLogprob``."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]

    @classmethod
    def of(cls, entry: TokenLogprob) -> ChatTokenLogprob:
        top = [TopLogprob(token=t.token, logprob=_finite(t.logprob), bytes=list(t.bytes)) for t in entry.top]
        return cls(
            token=entry.token, logprob=_finite(entry.logprob), bytes=list(entry.bytes), top_logprobs=top
        )


class ChoiceLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: None = None

    @classmethod
    def of(cls, entries: Sequence[TokenLogprob]) -> ChoiceLogprobs:
        return cls(content=[ChatTokenLogprob.of(e) for e in entries])


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one item per token; ``top_logprobs`` maps the most
    likely tokens' texts, and the chosen token's (so up to ``logprobs`` + 1 entries, as OpenAI says), to
    their logprobs; ``text_offset`` is where each token's text starts in the choice's text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]

    @classmethod
    def of(cls, entries: Sequence[TokenLogprob], offset: int = 0) -> CompletionLogprobs:
        offsets = []
        for entry in entries:
            offsets.append(offset)
            offset += len(entry.token)
        tops = []
        for entry in entries:
            top = {t.token: _finite(t.logprob) for t in entry.top}
            top.setdefault(entry.token, _finite(entry.logprob))
            tops.append(dict(sorted(top.items(), key=lambda item: -item[1])))
        return cls(
            tokens=[e.token for e in entries],
            token_logprobs=[_finite(e.logprob) for e in entries],
            top_logprobs=tops,
            text_offset=offsets,
        )


# -- /v1/chat/completions ---------------------------------------------------------------------------


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    """What a chunk adds to the message: its role once, at the start, then content."""

    role: Literal["assistant"] | None = Field(default=None, exclude_if=_absent_when_none)
    content: str | None = Field(default=None, exclude_if=_absent_when_none)


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(default=None, exclude_if=_absent_when_none)


# -- /v1/completions --------------------------------------------------------------------------------


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    """A whole completion, and also each streamed chunk (OpenAI uses the one shape for both)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = Field(default=None, exclude_if=_absent_when_none)
