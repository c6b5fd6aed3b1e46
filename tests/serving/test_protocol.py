"""Mapping of KAITO generate_kwargs and OpenAI fields to SamplingParams, and the request limits."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from kaito_core.plugins import TokenLogprob
from kaito_core.serving.protocol import ChatCompletionRequest, CompletionRequest, RequestError, kaito_sampling
from kaito_core.serving.responses import LOGPROB_FLOOR, ChoiceLogprobs, CompletionLogprobs


def test_kaito_defaults_follow_transformers_max_length_counting_the_prompt() -> None:
    params = kaito_sampling({}, prompt_tokens=30, cap=4096)
    assert params.max_tokens == 170  # max_length 200 - 30 prompt tokens
    assert params.top_k == 10 and params.temperature == 1.0 and not params.greedy


def test_max_new_tokens_wins_and_do_sample_false_is_greedy() -> None:
    params = kaito_sampling(
        {"max_new_tokens": 12, "do_sample": False, "stop": "\n"}, prompt_tokens=30, cap=64
    )
    assert params.max_tokens == 12 and params.greedy and params.stop == ("\n",)


def test_max_length_shorter_than_the_prompt_is_a_clear_400() -> None:
    with pytest.raises(RequestError, match="max_length 20 counts the prompt"):
        kaito_sampling({"max_length": 20}, prompt_tokens=25, cap=4096)


def test_cap_unknown_kwargs_and_beams() -> None:
    with pytest.raises(RequestError, match="exceeds this server's cap of 64"):
        kaito_sampling({"max_new_tokens": 65}, prompt_tokens=1, cap=64)
    with pytest.raises(RequestError, match="generate_kwargs bogus not supported"):
        kaito_sampling({"bogus": 1}, prompt_tokens=1, cap=64)
    with pytest.raises(RequestError, match="num_beams must be 1"):
        kaito_sampling({"num_beams": 4}, prompt_tokens=1, cap=64)
    with pytest.raises(RequestError, match="temperature must be a number") as err:
        kaito_sampling({"temperature": "hot"}, prompt_tokens=1, cap=64)
    assert err.value.param == "temperature"


def test_openai_fields() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "max_completion_tokens": 7,
            "temperature": 0,
            "stop": ["x", "y"],
            "seed": 3,
        }
    )
    params = body.sampling(default_max_tokens=100, cap=64)
    assert params.max_tokens == 7 and params.greedy and params.stop == ("x", "y") and params.seed == 3
    assert body.messages[0].to_chat().content == "ab"
    with pytest.raises(RequestError, match="top_p"):
        ChatCompletionRequest.model_validate({"messages": [], "top_p": 0}).sampling(10, 64)


def _chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "a"}], **fields})


def test_logprobs_map_to_sampling_params() -> None:
    assert _chat().sampling(10, 64).logprobs is None
    assert _chat(logprobs=False).sampling(10, 64).logprobs is None
    assert _chat(logprobs=True).sampling(10, 64).logprobs == 0
    assert _chat(logprobs=True, top_logprobs=20).sampling(10, 64).logprobs == 20
    assert CompletionRequest.model_validate({"prompt": "a", "logprobs": 0}).sampling(10, 64).logprobs == 0
    assert CompletionRequest.model_validate({"prompt": "a", "logprobs": 20}).sampling(10, 64).logprobs == 20
    assert CompletionRequest.model_validate({"prompt": "a", "echo": True}).sampling(10, 64).logprobs is None


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (_chat(top_logprobs=2), "top_logprobs", "requires logprobs: true"),
        (_chat(logprobs=False, top_logprobs=0), "top_logprobs", "requires logprobs: true"),
        (_chat(logprobs=True, top_logprobs=21), "top_logprobs", "between 0 and 20"),
        (_chat(logprobs=True, top_logprobs=-1), "top_logprobs", "between 0 and 20"),
        (CompletionRequest.model_validate({"prompt": "a", "logprobs": 21}), "logprobs", "between 0 and 20"),
        (CompletionRequest.model_validate({"prompt": "a", "logprobs": 1, "echo": True}), "echo", "echo"),
    ],
)
def test_logprobs_out_of_range_are_refused_by_name(body: Any, param: str, message: str) -> None:
    with pytest.raises(RequestError, match=message) as err:
        body.sampling(10, 64)
    assert err.value.param == param


def _entry(token: str, logprob: float, *top: tuple[str, float]) -> TokenLogprob:
    alternatives = tuple(TokenLogprob(t, lp, tuple(t.encode())) for t, lp in top)
    return TokenLogprob(token, logprob, tuple(token.encode()), alternatives)


def test_chat_logprobs_are_openais_shape() -> None:
    """What the official client parses: ChatCompletionTokenLogprob with TopLogprob alternatives; a
    zero probability is OpenAI's -9999.0, never a -Infinity JSON cannot carry."""
    from openai.types.chat.chat_completion import ChoiceLogprobs as OpenAIChoiceLogprobs

    entries = [
        _entry("Hi", -0.5, ("Hi", -0.5), ("Hey", -1.5)),
        _entry("\ufffd", -math.inf, ("!", -0.1), ("?", -3)),
    ]
    dumped = json.loads(ChoiceLogprobs.of(entries).model_dump_json())
    parsed = OpenAIChoiceLogprobs.model_validate(dumped)
    assert parsed.content is not None and [e.token for e in parsed.content] == ["Hi", "\ufffd"]
    assert parsed.content[0].top_logprobs[1].token == "Hey" and parsed.content[0].top_logprobs[1].bytes == [
        72,
        101,
        121,
    ]
    assert parsed.content[1].logprob == LOGPROB_FLOOR and parsed.content[1].bytes == [0xEF, 0xBF, 0xBD]
    assert dumped["refusal"] is None


def test_completion_logprobs_are_the_legacy_shape() -> None:
    from openai.types.completion_choice import Logprobs

    entries = [_entry("ab", -0.2, ("ab", -0.2)), _entry("c", -2.0, ("d", -0.1), ("e", -1.0))]
    parsed = Logprobs.model_validate(json.loads(CompletionLogprobs.of(entries, offset=5).model_dump_json()))
    assert parsed.tokens == ["ab", "c"] and parsed.token_logprobs == [-0.2, -2.0]
    assert parsed.text_offset == [5, 7]  # where each token starts, from where the stream had got to
    # the chosen token is always there, beside the alternatives: up to N + 1 entries, most likely first
    assert parsed.top_logprobs == [{"ab": -0.2}, {"d": -0.1, "e": -1.0, "c": -2.0}]
    assert list(parsed.top_logprobs[1]) == ["d", "e", "c"]
