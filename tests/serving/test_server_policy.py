"""Server policy over real HTTP (uvicorn on 127.0.0.1) with a scripted engine: health states, queue
limits, authentication, disconnects, metrics."""

from __future__ import annotations

import contextlib
import threading

import httpx


def test_health_is_503_while_loading_and_200_only_after_warm_up(serve, engine_factory, waiter) -> None:
    engine = engine_factory()
    engine.release_load.clear()
    server = serve(engine)
    response = httpx.get(server.url + "/health")
    assert response.status_code == 503 and response.json()["status"] == "Loading"
    assert httpx.get(server.url + "/").json() == {"message": "Server is running"}
    chat = httpx.post(server.url + "/chat", json={"prompt": "hi"})
    assert chat.status_code == 503 and "not ready" in chat.json()["detail"]
    engine.release_load.set()
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    assert engine.started == 1  # the warm-up generation ran before /health turned 200


def test_health_is_503_when_loading_fails(engine_factory, waiter) -> None:
    from kaito_core.serving.server import start_in_thread
    from kaito_core.serving.settings import ServerSettings

    failures: list[BaseException] = []
    server = start_in_thread(
        engine_factory(fail_load="weights are corrupt"),
        ServerSettings(served_model_name="x", on_load_failure=failures.append),
    )
    try:
        waiter(lambda: bool(failures))
        response = httpx.get(server.url + "/health")
        assert response.status_code == 503 and "weights are corrupt" in response.json()["error"]
    finally:
        server.stop()


def test_health_turns_503_when_decoding_stalls(serve, engine_factory, waiter) -> None:
    engine = engine_factory(delay=0.01)
    server = serve(engine, stall_timeout=0.3)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    engine.stalled = True
    worker = threading.Thread(
        target=lambda: httpx.post(
            server.url + "/chat", json={"prompt": "a", "generate_kwargs": {"max_new_tokens": 5}}, timeout=30
        )
    )
    worker.start()
    waiter(lambda: engine.running == 1)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 503, timeout=5)
    assert "no decode step" in httpx.get(server.url + "/health").json()["error"]
    engine.stalled = False
    worker.join(10)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)


def test_health_turns_503_when_the_engine_dies(serve, engine_factory, waiter) -> None:
    engine = engine_factory()
    server = serve(engine)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    engine.dead = "decode loop crashed: llama_decode failed with -3"
    response = httpx.get(server.url + "/health")
    assert response.status_code == 503 and "llama_decode failed" in response.json()["error"]


def test_full_queue_answers_429_with_retry_after(serve, engine_factory, waiter) -> None:
    engine = engine_factory(delay=0.05)
    server = serve(engine, max_concurrency=1, queue_size=1, retry_after=7)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "a", "generate_kwargs": {"max_new_tokens": 20}}
    results: list[int] = []
    workers = [
        threading.Thread(
            target=lambda: results.append(httpx.post(server.url + "/chat", json=body, timeout=30).status_code)
        )
        for _ in range(2)
    ]
    workers[0].start()
    waiter(lambda: engine.running == 1)
    workers[1].start()
    waiter(lambda: "kaito_queue_depth 1.0" in httpx.get(server.url + "/metrics").text)
    refused = httpx.post(server.url + "/chat", json=body)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert "queue is full" in refused.json()["detail"] and "--queue-size" in refused.json()["detail"]
    for worker in workers:
        worker.join(30)
    assert results == [200, 200]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'kaito_requests_total{endpoint="/chat",status="429"} 1.0' in metrics
    assert 'kaito_requests_total{endpoint="/chat",status="200"} 2.0' in metrics


def test_api_key_guards_everything_but_health(serve, engine_factory, waiter) -> None:
    server = serve(engine_factory(), api_keys=("k-one", "k-two"))
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "a", "generate_kwargs": {"max_new_tokens": 2}}
    missing = httpx.post(server.url + "/chat", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(server.url + "/chat", json=body, headers={"Authorization": "Bearer k-three"})
    assert wrong.status_code == 401 and "k-three" not in wrong.text
    assert httpx.get(server.url + "/v1/models").status_code == 401
    ok = httpx.post(server.url + "/chat", json=body, headers={"Authorization": "Bearer k-two"})
    assert ok.status_code == 200 and ok.json() == {"Result": "a w0 w1"}
    # the key is checked before the body is even parsed: a stranger learns nothing about the API
    garbage = httpx.post(server.url + "/chat", content=b"{not json")
    assert garbage.status_code == 401
    key = {"Authorization": "Bearer k-one"}
    malformed = httpx.post(server.url + "/chat", content=b"{not json", headers=key)
    assert malformed.status_code == 422 and "malformed JSON" in malformed.json()["detail"]


def test_unknown_paths_and_methods_get_the_same_json_errors(serve, engine_factory, waiter) -> None:
    server = serve(engine_factory())
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    missing = httpx.get(server.url + "/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "Not Found" and missing.json()["error"]["type"] == "not_found_error"
    wrong = httpx.delete(server.url + "/chat")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == 405
    invalid = httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": "many"})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["param"] == "max_tokens" and "max_tokens:" in invalid.json()["detail"]


def test_client_disconnect_cancels_a_non_streaming_generation(serve, engine_factory, waiter) -> None:
    engine = engine_factory(delay=0.05)
    server = serve(engine)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "a", "generate_kwargs": {"max_new_tokens": 60}}  # 3 s of generation
    with contextlib.suppress(httpx.ReadTimeout):
        httpx.post(server.url + "/chat", json=body, timeout=0.4)
    waiter(lambda: engine.cancelled == 1, timeout=2)
    assert engine.running == 0
    waiter(lambda: "kaito_requests_running 0.0" in httpx.get(server.url + "/metrics").text)


def test_client_disconnect_cancels_a_stream(serve, engine_factory, waiter) -> None:
    engine = engine_factory(delay=0.05)
    server = serve(engine)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "a", "max_tokens": 60, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break
    waiter(lambda: engine.cancelled == 1, timeout=2)
    waiter(lambda: "kaito_requests_running 0.0" in httpx.get(server.url + "/metrics").text)


def test_engine_failure_mid_stream_is_reported_in_the_stream(serve, engine_factory, waiter) -> None:
    engine = engine_factory(fail_after=2)
    server = serve(engine)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "a", "max_tokens": 10, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"text":" w1"' in events[1]
    assert "generation failed: llama_decode failed with -3" in events[-2] and events[-1] == "data: [DONE]"
    plain = httpx.post(server.url + "/v1/completions", json={**body, "stream": False})
    assert plain.status_code == 500 and "llama_decode failed" in plain.json()["error"]["message"]
    waiter(lambda: "kaito_requests_running 0.0" in httpx.get(server.url + "/metrics").text)


def test_chat_prefix_is_generated_from_but_not_returned(serve, engine_factory, waiter) -> None:
    engine = engine_factory()
    server = serve(engine)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "b c", "prefix": "a ", "generate_kwargs": {"max_length": 5}}
    response = httpx.post(server.url + "/chat", json=body)
    # max_length 5 counts the 3 words of prefix + prompt: two generated
    assert response.json() == {"Result": "b c w0 w1"}


def test_an_engine_that_reports_no_logprobs_gets_them_refused_by_name(serve, engine_factory, waiter) -> None:
    """The scripted engine fills no Chunk.logprobs: asked for them, the answer is a 400 naming the field
    (an error event when streaming), never a reply that quietly lacks them."""
    server = serve(engine_factory())
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"messages": [{"role": "user", "content": "a"}], "max_tokens": 3, "logprobs": True}
    response = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "logprobs", response.text
    completion = httpx.post(
        server.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3, "logprobs": 1}
    )
    assert completion.status_code == 400 and completion.json()["error"]["param"] == "logprobs"
    with httpx.stream(
        "POST", server.url + "/v1/completions", json={"prompt": "a", "logprobs": 1, "stream": True}
    ) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert "does not report log-probabilities" in events[-2] and events[-1] == "data: [DONE]"
    plain = httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3})
    assert plain.status_code == 200 and plain.json()["choices"][0]["logprobs"] is None
