"""Bodies a hostile or careless client sends, over real HTTP with a scripted engine: each is a 4xx
naming the field, and the server answers /health meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from kaito_core.plugins import RequestError
from kaito_core.serving import jsonbody
from kaito_core.serving.protocol import kaito_sampling

CHAT = "/chat"
COMPLETIONS = "/v1/completions"


def _raw(url: str, path: str, body: str | bytes) -> httpx.Response:
    return httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=30)


@pytest.fixture
def ready(serve: Any, engine_factory: Any, waiter: Any) -> Any:
    server = serve(engine_factory(), max_body_bytes=256 * 1024)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    return server


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (COMPLETIONS, '{"prompt": "abc\\ud800def", "max_tokens": 2}', "prompt"),
        (CHAT, '{"messages": [{"role": "user", "content": "x\\udfff"}]}', "messages.0.content"),
        (
            CHAT,
            '{"prompt": "a", "generate_kwargs": {"max_new_tokens": Infinity}}',
            "generate_kwargs.max_new_tokens",
        ),
        (CHAT, '{"prompt": "a", "generate_kwargs": {"seed": -Infinity}}', "generate_kwargs.seed"),
        (COMPLETIONS, '{"prompt": "a", "temperature": NaN}', "temperature"),
        (COMPLETIONS, '{"prompt": "a", "temperature": 1' + "0" * 400 + "}", "temperature"),
        (COMPLETIONS, '{"prompt": "a", "temperature": 1e400}', "temperature"),
        (COMPLETIONS, '{"prompt": "a", "seed": 99999999999999999999}', "seed"),
        (CHAT, '{"prompt": "a", "generate_kwargs": {"num_beams": "x"}}', "num_beams"),
        (CHAT, '{"prompt": "a", "generate_kwargs": {"do_sample": "false"}}', "do_sample"),
        (CHAT, '{"prompt": "a", "generate_kwargs": {"temperature": "nan"}}', "temperature"),
        (CHAT, '{"prompt": "a", "generate_kwargs": {"max_new_tokens": true}}', "max_new_tokens"),
        (COMPLETIONS, '{"prompt": "a", "stream": "false"}', "stream"),
        (COMPLETIONS, '{"prompt": "a", "echo": 1}', "echo"),
        (
            CHAT,
            '{"prompt": "a", "generate_kwargs": {"stop": ["a", "b", "c", "d", "e"]}}',
            "generate_kwargs.stop",
        ),
        (CHAT, '{"prompt": "a", "generate_kwargs": {"stop": [1]}}', "generate_kwargs.stop"),
        (
            CHAT,
            '{"prompt": "a", "generate_kwargs": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}",
            "body",  # the parser stops before it knows where it is
        ),
        (COMPLETIONS, "[" * 100_000 + "]" * 100_000, "body"),
    ],
)
def test_client_mistakes_are_4xx_naming_the_field(ready: Any, path: str, body: str, field: str) -> None:
    response = _raw(ready.url, path, body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["param"] == field or error["param"] == field.rsplit(".", 1)[-1], error
    assert field.rsplit(".", 1)[-1] in error["message"]


def test_a_body_over_the_limit_is_413_before_it_is_read(ready: Any) -> None:
    big = b'{"prompt": "' + b"a" * (300 * 1024) + b'"}'
    response = _raw(ready.url, COMPLETIONS, big)
    assert response.status_code == 413 and response.json()["error"]["param"] == "body"

    def chunks() -> Any:  # no Content-Length: the limit holds while reading
        yield b'{"prompt": "'
        for _ in range(100):  # 400 KiB
            yield b"a" * 4096
        yield b'"}'

    streamed = httpx.post(
        ready.url + COMPLETIONS, content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_texts_too_long_for_the_context_are_refused_before_tokenizing(serve: Any, engine_factory: Any,
                                                                      waiter: Any) -> None:  # fmt: skip
    engine = engine_factory()
    server = serve(engine, max_chars_per_token=4)  # the scripted engine's context is 64 tokens: 256 chars
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    counted = engine.counted
    response = httpx.post(server.url + COMPLETIONS, json={"prompt": "hi\n" * 100})
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
    assert "300 characters" in response.json()["error"]["message"]
    many = httpx.post(server.url + CHAT, json={"messages": [{"role": "user", "content": "a"}] * 100})
    assert many.status_code == 400 and many.json()["error"]["param"] == "messages"
    long = httpx.post(server.url + CHAT, json={"messages": [{"role": "user", "content": "a" * 300}]})
    assert long.status_code == 400 and long.json()["error"]["param"] == "messages"
    assert engine.counted == counted  # nothing reached the tokenizer


def test_health_answers_while_a_prompt_is_being_tokenized(
    serve: Any, engine_factory: Any, waiter: Any
) -> None:
    engine = engine_factory()
    server = serve(engine)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    engine.tokenizing = threading.Event()  # count_tokens blocks until set: a very slow tokenizer
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(
            httpx.post(
                server.url + COMPLETIONS, json={"prompt": "slow", "max_tokens": 2}, timeout=60
            ).status_code
        )
    )
    worker.start()
    waiter(lambda: engine.counting > 0)
    try:
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # the loop is free
        assert httpx.get(server.url + "/", timeout=10).status_code == 200
    finally:
        engine.tokenizing.set()
    worker.join(30)
    assert result == [200]


def test_strict_json_unit() -> None:
    assert jsonbody.loads(b'{"a": [1, 2.5, "\\u00e9", true, null]}') == {"a": [1, 2.5, "\u00e9", True, None]}
    assert jsonbody.loads('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a surrogate pair is fine
    for bad, path in [('{"a": NaN}', "a"), ('{"a": [1, {"b": Infinity}]}', "a.1.b"), ('{"a": 1e999}', "a")]:
        with pytest.raises(jsonbody.BodyError) as err:
            jsonbody.loads(bad)
        assert err.value.path == path


def test_kaito_numbers_are_numbers() -> None:
    with pytest.raises(RequestError) as err:
        kaito_sampling({"top_k": 2.5}, prompt_tokens=1, cap=64)
    assert err.value.param == "top_k"
    params = kaito_sampling({"temperature": 1, "do_sample": False}, prompt_tokens=1, cap=4096)
    assert params.temperature == 1.0 and params.greedy
