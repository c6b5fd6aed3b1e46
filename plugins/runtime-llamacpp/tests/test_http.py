"""The llama.cpp runtime behind `kaito serve`'s app, end to end over HTTP with the real Gemma 3 270M."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import openai
import pytest

MODEL_NAME = "gemma-3-270m"  # what conftest serves


def _client(served: Any, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=kwargs.pop("api_key", "unused"), **kwargs)


def _metric(url: str, line_prefix: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- KAITO /chat ---------------------------------------------------------------------------------------


def test_chat_prompt_returns_full_text_by_default(gemma_server: Any) -> None:
    prompt = "The capital of France is"
    body = {"prompt": prompt, "generate_kwargs": {"max_new_tokens": 8, "do_sample": False}}
    full = httpx.post(gemma_server.url + "/chat", json=body, timeout=60).json()["Result"]
    reply = httpx.post(gemma_server.url + "/chat", json={**body, "return_full_text": False}, timeout=60)
    assert reply.status_code == 200
    assert full == prompt + reply.json()["Result"]  # greedy: the same continuation twice
    assert len(reply.json()["Result"].split()) >= 2


def test_chat_messages_use_the_chat_template(gemma_server: Any) -> None:
    body = {"messages": [{"role": "user", "content": "Say hello."}], "generate_kwargs": {"max_new_tokens": 8}}
    response = httpx.post(gemma_server.url + "/chat", json=body, timeout=60)
    assert response.status_code == 200
    result = response.json()["Result"]
    assert result.strip() and "<start_of_turn>" not in result


def test_chat_missing_prompt_and_messages_give_kaitos_messages(gemma_server: Any) -> None:
    missing = httpx.post(gemma_server.url + "/chat", json={"generate_kwargs": {}})
    assert (
        missing.status_code == 400 and missing.json()["detail"] == "Text generation parameter prompt required"
    )
    empty = httpx.post(gemma_server.url + "/chat", json={"messages": []})
    assert empty.status_code == 400 and empty.json()["detail"] == "Conversational parameter messages required"


# -- OpenAI ---------------------------------------------------------------------------------------------


def test_models_lists_the_served_model(gemma_server: Any) -> None:
    models = _client(gemma_server).models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]


def test_chat_completions_streaming_matches_non_streaming(gemma_server: Any) -> None:
    client = _client(gemma_server)
    messages = [{"role": "user", "content": "Name a colour."}]
    whole = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0)
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    stream = client.chat.completions.create(
        model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    parts, finish, usage, roles = [], None, None, []
    for event in stream:
        if event.usage is not None:
            usage = event.usage
        for c in event.choices:
            roles.append(c.delta.role)
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(parts) == choice.message.content
    assert roles[0] == "assistant" and finish == choice.finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_completions_with_stop_n_and_streaming(gemma_server: Any) -> None:
    client = _client(gemma_server)
    plain = client.completions.create(
        model=MODEL_NAME, prompt="Once upon a time", max_tokens=16, temperature=0
    )
    text = plain.choices[0].text
    assert "," in text  # greedy: " , in a land ..." - so the stop string below is really hit
    stopped = client.completions.create(
        model=MODEL_NAME, prompt="Once upon a time", max_tokens=16, temperature=0, stop=[","]
    )
    assert stopped.choices[0].text == text.split(",")[0] and stopped.choices[0].finish_reason == "stop"

    two = client.completions.create(model=MODEL_NAME, prompt="Hello", max_tokens=8, n=2, temperature=0.8)
    assert sorted(c.index for c in two.choices) == [0, 1]

    pieces = [
        c.text
        for event in client.completions.create(
            model=MODEL_NAME, prompt="Once upon a time", max_tokens=16, temperature=0, stream=True
        )
        for c in event.choices
    ]
    assert "".join(pieces) == text


def test_eight_concurrent_clients_are_decoded_together(gemma_server: Any) -> None:
    gemma_server.engine.max_observed_batch = 0

    async def run() -> list[openai.types.Completion]:
        client = openai.AsyncOpenAI(base_url=gemma_server.url + "/v1", api_key="unused")
        prompts = [f"Story number {i}: once upon a time" for i in range(8)]
        ignore_eos = {"ignore_eos": True}
        calls = [
            client.completions.create(model=MODEL_NAME, prompt=p, max_tokens=16, extra_body=ignore_eos)
            for p in prompts
        ]
        return await asyncio.gather(*calls)

    results = asyncio.run(run())
    assert len(results) == 8
    assert all(r.usage is not None and r.usage.completion_tokens == 16 for r in results)
    assert all(r.choices[0].text for r in results)
    # continuous batching: sequences shared llama_decode calls (8 means all at once)
    assert gemma_server.engine.max_observed_batch > 1


# -- limits ---------------------------------------------------------------------------------------------


def test_malformed_json_is_422(gemma_server: Any) -> None:
    response = httpx.post(
        gemma_server.url + "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and "malformed JSON" in response.json()["error"]["message"]
    wrong_type = httpx.post(gemma_server.url + "/v1/completions", json={"prompt": "x", "max_tokens": "many"})
    assert wrong_type.status_code == 422 and "max_tokens" in wrong_type.json()["error"]["message"]


def test_prompt_longer_than_the_context_is_400_naming_the_context(gemma_server: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(gemma_server).completions.create(
            model=MODEL_NAME, prompt="word " * (gemma_server.context + 10), max_tokens=4
        )
    assert f"context is {gemma_server.context} tokens" in str(err.value)


def test_max_tokens_above_the_cap_and_n_above_the_limit_are_400(gemma_server: Any) -> None:
    client = _client(gemma_server)
    with pytest.raises(openai.BadRequestError, match=f"cap of {gemma_server.cap}"):
        client.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=gemma_server.cap + 1)
    with pytest.raises(openai.BadRequestError, match="--max-n"):
        client.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=4, n=5)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="Hi", max_tokens=4)


def test_client_disconnect_stops_the_sequence(gemma_server: Any) -> None:
    url = gemma_server.url
    before = _metric(url, "kaito_generation_tokens_total")
    body = {
        "model": MODEL_NAME,
        "prompt": "Tell a long story:",
        "max_tokens": gemma_server.cap,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # leave after the first token: the connection closes
    deadline = time.monotonic() + 60
    while gemma_server.engine.health().running or _metric(url, "kaito_requests_running"):
        assert time.monotonic() < deadline, "the sequence kept running after the client left"
        time.sleep(0.02)
    generated = _metric(url, "kaito_generation_tokens_total") - before
    assert 1 <= generated < gemma_server.cap


def test_metrics_report_requests_tokens_and_latency(gemma_server: Any) -> None:
    httpx.post(
        gemma_server.url + "/chat",
        json={"prompt": "Hi", "generate_kwargs": {"max_new_tokens": 4}},
        timeout=60,
    )
    text = httpx.get(gemma_server.url + "/metrics").text
    assert 'kaito_requests_total{endpoint="/chat",status="200"}' in text
    assert _metric(gemma_server.url, "kaito_prompt_tokens_total") > 0
    assert _metric(gemma_server.url, "kaito_generation_tokens_total") >= 4
    assert _metric(gemma_server.url, "kaito_time_to_first_token_seconds_count") >= 1
    assert "kaito_generation_tokens_per_second_bucket" in text and "kaito_queue_depth" in text


# -- the strict server: one slot, a queue of one, an API key ------------------------------------------


def test_health_was_503_while_loading(strict_server: Any) -> None:
    assert strict_server.first_health == 503
    assert httpx.get(strict_server.url + "/health").json() == {"status": "Healthy"}


def test_bad_api_key_is_401_and_health_stays_open(strict_server: Any) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(strict_server, api_key="wrong").completions.create(
            model=MODEL_NAME, prompt="Hi", max_tokens=2
        )
    ok = _client(strict_server, api_key=strict_server.api_key).completions.create(
        model=MODEL_NAME, prompt="Hi", max_tokens=2
    )
    assert ok.usage is not None and ok.usage.completion_tokens >= 1
    assert httpx.get(strict_server.url + "/health").status_code == 200


def test_full_queue_is_429_with_retry_after(strict_server: Any) -> None:
    url = strict_server.url
    headers = {"Authorization": f"Bearer {strict_server.api_key}"}
    body = {"model": MODEL_NAME, "prompt": "Count:", "max_tokens": 48, "ignore_eos": True}
    statuses: list[int] = []
    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, headers=headers,
                      timeout=60) as running:  # fmt: skip
        lines = running.iter_lines()
        next(line for line in lines if line.startswith("data: {"))  # the one slot is busy now
        queued = threading.Thread(
            target=lambda: statuses.append(httpx.post(url + "/v1/completions", json=body, headers=headers,
                                                      timeout=120).status_code)
        )  # fmt: skip
        queued.start()
        deadline = time.monotonic() + 60
        while _metric(url, "kaito_queue_depth") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = httpx.post(url + "/v1/completions", json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"
        assert "queue is full" in refused.json()["error"]["message"]
        assert lines and [line for line in lines if line == "data: [DONE]"]
    queued.join(120)
    assert statuses == [200]
