"""The real Gemma 3 270M behind `kaito serve`'s app, tried as a hostile client would: requests that used
to wedge the server, freeze its event loop or answer 500."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

MODEL_NAME = "gemma-3-270m"  # what conftest serves
#: generous bounds for work that takes seconds here (minutes on a machine shared with other jobs);
#: they fail only when something never happens
PATIENCE = 900.0


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_requests_with_n_4_behind_running_ones_are_all_served(gemma_server: Any) -> None:
    # 8 slots: two n=4 streams hold them all; four more n=4 requests queue. Slots handed out one per
    # waiter split between the four, each waited for the rest, and nothing was ever served again.
    url = gemma_server.url
    long = {"model": MODEL_NAME, "prompt": "Count:", "max_tokens": 16, "n": 4,
            "ignore_eos": True, "stream": True}  # fmt: skip
    short = {"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 4, "n": 4}
    statuses: list[int] = []

    def queued() -> None:
        statuses.append(httpx.post(url + "/v1/completions", json=short, timeout=PATIENCE).status_code)

    with (
        httpx.stream("POST", url + "/v1/completions", json=long, timeout=PATIENCE) as first,
        httpx.stream("POST", url + "/v1/completions", json=long, timeout=PATIENCE) as second,
    ):
        first_lines, second_lines = first.iter_lines(), second.iter_lines()
        next(line for line in first_lines if line.startswith("data: {"))
        next(line for line in second_lines if line.startswith("data: {"))
        assert _metric(url, "kaito_requests_running") == 8
        workers = [threading.Thread(target=queued) for _ in range(4)]
        for worker in workers:
            worker.start()
        _wait(lambda: _metric(url, "kaito_queue_depth") == 4, "the four requests did not queue")
        for _ in first_lines:  # both streams run to their end and hand their slots back
            pass
        for _ in second_lines:
            pass
    for worker in workers:
        worker.join(PATIENCE)
    assert statuses == [200, 200, 200, 200]
    plain = httpx.post(url + "/v1/completions", json={**short, "n": 1}, timeout=PATIENCE)
    assert plain.status_code == 200
    assert _metric(url, "kaito_queue_depth") == 0 and _metric(url, "kaito_requests_running") == 0


def test_a_huge_prompt_is_refused_by_its_length_and_health_stays_up(gemma_server: Any) -> None:
    # "hi\n" * 60000 took llama.cpp's tokenizer 15 s on the event loop, with /health waiting throughout.
    url = gemma_server.url
    statuses: list[int] = []
    huge = threading.Thread(
        target=lambda: statuses.append(
            httpx.post(
                url + "/v1/completions", json={"prompt": "hi\n" * 60000, "max_tokens": 2}, timeout=PATIENCE
            ).status_code
        )
    )
    huge.start()
    assert httpx.get(url + "/health", timeout=PATIENCE).status_code == 200
    huge.join(PATIENCE)
    assert statuses == [400]
    response = httpx.post(url + "/chat", json={"prompt": "hi\n" * 60000}, timeout=PATIENCE)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
    assert "180000 characters" in response.json()["detail"]
    messages = [{"role": "user", "content": "a"}] * 100_000
    many = httpx.post(url + "/v1/chat/completions", json={"messages": messages}, timeout=PATIENCE)
    assert many.status_code == 400 and many.json()["error"]["param"] == "messages"


def test_client_mistakes_on_the_real_model_are_4xx(gemma_server: Any) -> None:
    url = gemma_server.url
    headers = {"content-type": "application/json"}
    for path, body, field in [
        ("/v1/completions", '{"prompt": "abc\\ud800def", "max_tokens": 2}', "prompt"),
        ("/chat", '{"prompt": "abc\\ud800def"}', "prompt"),
        ("/chat", '{"prompt": "a", "generate_kwargs": {"max_new_tokens": Infinity}}', "max_new_tokens"),
        ("/v1/completions", '{"prompt": "a", "temperature": 1' + "0" * 400 + "}", "temperature"),
        ("/chat", '{"prompt": "a", "generate_kwargs": {"num_beams": "x"}}', "num_beams"),
    ]:
        response = httpx.post(url + path, content=body, headers=headers, timeout=PATIENCE)
        assert 400 <= response.status_code < 500, (body[:60], response.text)
        assert field in response.json()["error"]["message"]
    stops = {
        "prompt": "a",
        "generate_kwargs": {"max_new_tokens": 2, "stop": [f"s{i}" for i in range(100_000)]},
    }
    response = httpx.post(url + "/chat", json=stops, timeout=PATIENCE)
    assert response.status_code == 400 and "at most 4 stop sequences" in response.json()["detail"]
    assert httpx.get(url + "/health").status_code == 200
