"""`kaito serve --runtime vllm` over a real OpenAI-speaking child process: /chat translation, the
OpenAI API, token accounting, limits and health."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

MODEL = "tiny-chat"  # conftest's served model name

pytestmark = pytest.mark.timeout(120)


def test_health_and_models(served: Any) -> None:
    assert httpx.get(f"{served.url}/health").status_code == 200
    models = httpx.get(f"{served.url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == [MODEL]
    assert models[0]["max_model_len"] == 64  # read from vLLM's /v1/models


def test_chat_prompt_translates_generate_kwargs(served: Any) -> None:
    body = {"prompt": "one two three", "return_full_text": False,
            "generate_kwargs": {"max_new_tokens": 2, "temperature": 0.5, "top_k": 7, "top_p": 0.9,
                                "repetition_penalty": 1.1, "seed": 42}}
    response = httpx.post(f"{served.url}/chat", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"Result": " three two"}  # the fake model reverses the prompt
    sent = served.requests_seen()[-1]
    assert sent["model"] == MODEL and sent["prompt"] == "one two three" and sent["stream"] is True
    assert (sent["max_tokens"], sent["temperature"], sent["top_k"], sent["top_p"]) == (2, 0.5, 7, 0.9)
    assert (sent["repetition_penalty"], sent["seed"]) == (1.1, 42)
    assert sent["stream_options"] == {"include_usage": True}
    assert "add_special_tokens" not in sent  # a plain prompt gets vLLM's BOS


def test_chat_messages_use_the_weights_template_without_a_second_bos(served: Any) -> None:
    body = {"messages": [{"role": "user", "content": "hello there"}],
            "generate_kwargs": {"max_new_tokens": 8, "do_sample": False}}
    response = httpx.post(f"{served.url}/chat", json=body, timeout=30)
    assert response.status_code == 200, response.text
    sent = served.requests_seen()[-1]
    assert sent["prompt"] == "<s><|user|> hello there <|assistant|>"
    assert sent["add_special_tokens"] is False
    assert sent["temperature"] == 0.0 and "top_k" not in sent  # greedy
    assert response.json()["Result"] == " <|assistant|> there hello <|user|>"


def test_openai_chat_and_completions_count_tokens_exactly(served: Any) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
    completion = client.completions.create(model=MODEL, prompt="a b c d e", max_tokens=3)
    assert completion.choices[0].text == " e d c"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6, 3)  # BOS + 5 words

    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x y"}],
                                          max_tokens=20)
    assert chat.choices[0].message.content == " <|assistant|> y x <|user|>"
    assert chat.choices[0].finish_reason == "stop"  # the fake model's EOS
    assert chat.usage is not None and chat.usage.completion_tokens == 4

    pieces = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="p q r", max_tokens=2, stream=True) if c.choices]
    assert "".join(pieces) == " r q"


def test_stop_strings_reach_vllm(served: Any) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
    completion = client.completions.create(model=MODEL, prompt="a b STOP c d", max_tokens=10, stop=["STOP"])
    assert served.requests_seen()[-1]["stop"] == ["STOP"]
    assert completion.choices[0].text == " d c "
    assert completion.choices[0].finish_reason == "stop"


def test_logprobs_pass_through_to_vllm(served: Any) -> None:
    """Asked of vLLM as its completions ``logprobs: N`` and read back into both OpenAI shapes: chat's
    N alternatives (the most likely of vLLM's up to N + 1), completions' legacy lists."""
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x y"}],
                                          max_tokens=20, logprobs=True, top_logprobs=2)  # fmt: skip
    assert served.requests_seen()[-1]["logprobs"] == 2
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and chat.usage is not None and len(content) == chat.usage.completion_tokens
    assert "".join(e.token for e in content) == chat.choices[0].message.content
    assert [e.logprob for e in content] == [-0.25, -0.5, -0.75, -1.0]  # the fake's numbers, as they came
    assert [[a.token for a in e.top_logprobs] for e in content][1] == [" y", " alt1"]
    assert content[1].bytes == list(b" y")

    streamed = [e.token for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x y"}], max_tokens=20, logprobs=True, stream=True,
    ) for ch in c.choices if ch.logprobs and ch.logprobs.content for e in ch.logprobs.content]  # fmt: skip
    assert streamed == [e.token for e in content]

    completion = client.completions.create(model=MODEL, prompt="a b STOP c d", max_tokens=10, stop=["STOP"],
                                           logprobs=2)  # fmt: skip
    legacy = completion.choices[0].logprobs
    assert completion.choices[0].text == " d c " and legacy is not None
    # the token that met the stop string is counted and reported, though its text is cut
    assert legacy.tokens == [" d", " c", " STOP"] and completion.usage.completion_tokens == 3  # type: ignore[union-attr]
    assert legacy.top_logprobs == [{" d": -0.25, " alt1": -1.25}, {" c": -0.5, " alt1": -1.5},
                                   {" STOP": -0.75, " alt1": -1.75}]  # fmt: skip
    assert legacy.text_offset == [0, 2, 4]


def test_too_long_prompt_is_a_400_naming_the_limit(served: Any) -> None:
    response = httpx.post(f"{served.url}/chat", json={"prompt": "w " * 80}, timeout=30)
    assert response.status_code == 400
    assert "64" in response.text


def test_child_death_turns_health_to_503(serve_factory: Callable[..., Any]) -> None:
    server = serve_factory()
    assert httpx.get(f"{server.url}/health").status_code == 200
    os.kill(server.upstream_pid(), signal.SIGKILL)  # the fake vLLM, which this test's server started
    deadline = time.monotonic() + 60
    status = 200
    while time.monotonic() < deadline and status == 200:
        response = httpx.get(f"{server.url}/health")
        status = response.status_code
        time.sleep(0.1)
    assert status == 503
    assert "exited with code -9" in response.json()["error"]
    chat = httpx.post(f"{server.url}/chat", json={"prompt": "hi"}, timeout=30)
    assert chat.status_code == 503


def test_failing_vllm_health_turns_health_to_503_and_back(serve_factory: Callable[..., Any]) -> None:
    server = serve_factory()
    upstream = f"http://127.0.0.1:{server.upstream_port()}"

    def wait_for(code: int) -> httpx.Response:
        deadline = time.monotonic() + 60
        while True:
            response = httpx.get(f"{server.url}/health")
            if response.status_code == code or time.monotonic() > deadline:
                return response
            time.sleep(0.1)

    httpx.post(f"{upstream}/_health_status/500")
    failing = wait_for(503)
    assert failing.status_code == 503
    assert "vLLM /health answered 500" in failing.json()["error"]
    httpx.post(f"{upstream}/_health_status/200")
    assert wait_for(200).status_code == 200


def test_failed_start_explains_itself(serve_factory: Callable[..., Any], tmp_path: Path) -> None:
    port_log = tmp_path / "serve.log"
    with pytest.raises(AssertionError) as err:
        serve_factory("--exit-code", "3")
    assert "CUDA out of memory (simulated)" in str(err.value)
    assert "exited with code 3" in port_log.read_text()


def test_a_killed_server_takes_vllm_with_it(serve_factory: Callable[..., Any]) -> None:
    server = serve_factory()
    upstream = server.upstream_pid()
    server.process.kill()  # SIGKILL: no shutdown code runs in kaito serve
    server.process.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and running(upstream):
        time.sleep(0.1)
    assert not running(upstream), "the vLLM child outlived its kaito serve"


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited child waits as one until its new parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
