"""Mapping of KAITO generate_kwargs and OpenAI fields to SamplingParams, and the request limits."""

from __future__ import annotations

import pytest

from kaito_core.serving.protocol import ChatCompletionRequest, RequestError, kaito_sampling


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
