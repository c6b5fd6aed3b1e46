"""Request bodies of KAITO's /chat and of the OpenAI API, and their mapping to SamplingParams."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kaito_core.plugins import ChatMessage, RequestError, SamplingParams

# --------------------------------------------------------------------------------------------------
# KAITO /chat
# --------------------------------------------------------------------------------------------------

#: KAITO's transformers server defaults (v0.4.6) for generate_kwargs.
KAITO_DEFAULTS: dict[str, Any] = {
    "max_length": 200,
    "min_length": 0,
    "do_sample": True,
    "temperature": 1.0,
    "top_k": 10,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
}

#: generate_kwargs that are accepted but change nothing here (beam search is not offered).
_ACCEPTED_NOOPS = {
    "early_stopping",
    "num_beams",
    "length_penalty",
    "no_repeat_ngram_size",
    "num_return_sequences",
    "pad_token_id",
    "eos_token_id",
    "use_cache",
}
_SUPPORTED_KWARGS = {
    *KAITO_DEFAULTS,
    "max_new_tokens",
    "min_new_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "min_p",
    "ignore_eos",
}


#: Request models take JSON's types as they are: no "5" for 5, no "false" for false (which Python's
#: bool() would read as true), no NaN.
_STRICT = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class Message(BaseModel):
    model_config = _STRICT
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """OpenAI allows content as a list of parts; text parts are joined, others refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError("only text content parts are supported", param="messages")
            texts.append(part["text"])
        return "".join(texts)

    def to_chat(self) -> ChatMessage:
        return ChatMessage(role=self.role, content=self.text())


class KaitoChatRequest(BaseModel):
    model_config = _STRICT
    prompt: str | None = None
    messages: list[Message] | None = None
    return_full_text: bool = True
    clean_up_tokenization_spaces: bool = False
    prefix: str | None = None
    handle_long_generation: str | None = None
    generate_kwargs: dict[str, Any] = Field(default_factory=dict)
    #: which LoRA adapter answers (an extension of KAITO's /chat, as ``model`` is in the OpenAI API):
    #: absent, every adapter at its strength; "" or the base model's name, the base model alone; an
    #: adapter's name, that adapter
    adapter: str | None = None


#: Stop strings a request may give (OpenAI's limit; every one is matched against every stream's text).
MAX_STOP = 4


def _number(kwargs: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    """``generate_kwargs[name]`` as an int or a float; a bool, a string or anything else is refused
    (``True`` is an int to Python and ``"5"`` is not a number to JSON)."""
    value = kwargs.get(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        article = "an integer" if kind is int else "a number"
        raise RequestError(f"generate_kwargs.{name} must be {article}, got {value!r:.40}", param=name)
    return value


def _boolean(kwargs: dict[str, Any], name: str, default: bool) -> bool:
    value = kwargs.get(name, default)
    if not isinstance(value, bool):  # "false" is a true string: never guess
        raise RequestError(f"generate_kwargs.{name} must be true or false, got {value!r:.40}", param=name)
    return value


def stop_strings(value: Any, param: str = "stop") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RequestError(f"{param} must be a string or a list of strings", param=param)
    if len(value) > MAX_STOP:
        raise RequestError(f"{param}: at most {MAX_STOP} stop sequences, got {len(value)}", param=param)
    return tuple(value)


def kaito_sampling(kwargs: dict[str, Any], prompt_tokens: int, cap: int) -> SamplingParams:
    """Map KAITO generate_kwargs to SamplingParams.

    ``max_length`` counts prompt plus generated tokens, as in transformers (and KAITO's default of 200);
    ``max_new_tokens``, when given, counts generated tokens only and wins.
    """
    unknown = sorted(set(kwargs) - _SUPPORTED_KWARGS - _ACCEPTED_NOOPS)
    if unknown:
        raise RequestError(
            f"generate_kwargs {', '.join(unknown)} not supported; "
            f"supported: {', '.join(sorted(_SUPPORTED_KWARGS))}",
            param="generate_kwargs",
        )
    if _number(kwargs, "num_beams", 1, int) != 1:
        raise RequestError("generate_kwargs.num_beams must be 1 (beam search is not offered)", "num_beams")
    merged = {**KAITO_DEFAULTS, **kwargs}
    if "max_new_tokens" in kwargs:
        max_new = _number(kwargs, "max_new_tokens", None, int)
    else:
        max_length = _number(merged, "max_length", None, int)
        max_new = max_length - prompt_tokens
        if max_new < 1:
            raise RequestError(
                f"generate_kwargs.max_length {max_length} counts the prompt ({prompt_tokens} "
                "tokens) and leaves no room to generate; raise max_length or set max_new_tokens",
                param="max_length",
            )
    if "min_new_tokens" in kwargs:
        min_new = _number(kwargs, "min_new_tokens", None, int)
    else:
        min_new = max(0, _number(merged, "min_length", None, int) - prompt_tokens)
    temperature = _number(merged, "temperature", None, float)
    do_sample = _boolean(merged, "do_sample", True)
    seed = None if kwargs.get("seed") is None else _number(kwargs, "seed", None, int)
    params = SamplingParams(
        max_tokens=max_new,
        min_tokens=min_new,
        temperature=temperature,
        top_k=_number(merged, "top_k", None, int),
        top_p=_number(merged, "top_p", None, float),
        min_p=_number(kwargs, "min_p", 0.0, float),
        typical_p=_number(merged, "typical_p", None, float),
        repetition_penalty=_number(merged, "repetition_penalty", None, float),
        presence_penalty=_number(kwargs, "presence_penalty", 0.0, float),
        frequency_penalty=_number(kwargs, "frequency_penalty", 0.0, float),
        seed=seed,
        stop=stop_strings(kwargs.get("stop"), "generate_kwargs.stop"),
        greedy=not do_sample or temperature == 0.0,
        ignore_eos=_boolean(kwargs, "ignore_eos", False),
    )
    check_sampling(params, cap)
    return params


def check_sampling(params: SamplingParams, cap: int) -> None:
    if params.max_tokens < 1:
        raise RequestError(f"max_tokens must be at least 1, got {params.max_tokens}", "max_tokens")
    if params.max_tokens > cap:
        raise RequestError(
            f"max_tokens {params.max_tokens} exceeds this server's cap of {cap} (--max-tokens-cap)",
            "max_tokens",
        )
    for name in ("temperature", "top_p", "min_p", "typical_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty"):  # fmt: skip
        if not math.isfinite(getattr(params, name)):  # NaN passes every comparison below
            raise RequestError(f"{name} must be a finite number", name)
    if params.min_tokens < 0:
        raise RequestError("min_tokens must be >= 0", "min_tokens")
    if params.temperature < 0:
        raise RequestError("temperature must be >= 0", "temperature")
    if not 0.0 < params.top_p <= 1.0:
        raise RequestError("top_p must be in (0, 1]", "top_p")
    if params.top_k < 0:
        raise RequestError("top_k must be >= 0", "top_k")
    if params.repetition_penalty <= 0:
        raise RequestError("repetition_penalty must be > 0", "repetition_penalty")


# --------------------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = _STRICT
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = _STRICT
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def schema_text(self) -> str | None:
        """The JSON Schema the output must match, as canonical JSON text; None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return '{"type": "object"}'
        if self.json_schema is None:
            raise RequestError(
                "response_format.json_schema is required when response_format.type is json_schema",
                param="response_format.json_schema",
            )
        return json.dumps(self.json_schema.schema_ or {"type": "object"}, sort_keys=True)


#: The most alternatives per token a request may ask for: OpenAI's limit for chat's ``top_logprobs``,
#: and vLLM's default ``--max-logprobs``; completions' ``logprobs`` takes the same (OpenAI's own is 5).
MAX_LOGPROBS = 20


def check_logprobs(value: int, param: str) -> int:
    if not 0 <= value <= MAX_LOGPROBS:
        raise RequestError(f"{param} must be between 0 and {MAX_LOGPROBS}, got {value}", param=param)
    return value


class _OpenAIBase(BaseModel):
    model_config = _STRICT
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # Extensions vLLM and llama.cpp also accept.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    response_format: ResponseFormat | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return value

    def sampling(self, default_max_tokens: int, cap: int) -> SamplingParams:
        temperature = 1.0 if self.temperature is None else self.temperature
        stop = self.stop or ()
        params = SamplingParams(
            max_tokens=default_max_tokens if self.max_tokens is None else self.max_tokens,
            min_tokens=self.min_tokens,
            temperature=temperature,
            top_k=self.top_k or 0,
            top_p=1.0 if self.top_p is None else self.top_p,
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            greedy=temperature == 0.0,
            ignore_eos=self.ignore_eos,
            json_schema=self.response_format.schema_text() if self.response_format else None,
            logprobs=self.logprobs_wanted(),
        )
        check_sampling(params, cap)
        return params

    def logprobs_wanted(self) -> int | None:
        """How many alternatives per token the request asks for; None for no log-probabilities."""
        return None


class ChatCompletionRequest(_OpenAIBase):
    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None  # alternatives per token, with logprobs: true
    # Accepted so that they are refused by name, never ignored: a client relying on them must know.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None

    def refuse_unsupported(self) -> None:
        if self.tools or self.functions or self.tool_choice not in (None, "none"):
            field = "tools" if self.tools else "functions" if self.functions else "tool_choice"
            raise RequestError(f"{field}: tool calling is not supported by this server yet", param=field)

    def logprobs_wanted(self) -> int | None:
        if self.top_logprobs is not None:
            if not self.logprobs:  # as OpenAI answers it: the alternatives come with the chosen token's
                raise RequestError("top_logprobs requires logprobs: true", param="top_logprobs")
            check_logprobs(self.top_logprobs, "top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None

    def sampling(self, default_max_tokens: int, cap: int) -> SamplingParams:
        self.refuse_unsupported()
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return super().sampling(default_max_tokens, cap)


class CompletionRequest(_OpenAIBase):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    max_tokens: int | None = 16  # OpenAI's default for completions

    def logprobs_wanted(self) -> int | None:
        if self.logprobs is None:
            return None
        if self.echo:
            raise RequestError(
                "echo with logprobs: log-probabilities of the prompt's tokens are not computed by this "
                "server; ask without echo (and prepend the prompt yourself)",
                param="echo",
            )
        return check_logprobs(self.logprobs, "logprobs")

    def prompts(self) -> list[str]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts:
            raise RequestError("prompt must not be empty", "prompt")
        return prompts


FinishReason = Literal["stop", "length"]
