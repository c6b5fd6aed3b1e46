"""Shutdown and slow clients over real HTTP with a scripted engine: a stream the grace period cuts ends
with an error event and [DONE]; a connection that never finishes its headers is closed."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx


def test_a_stream_cut_at_the_end_of_the_grace_period_gets_a_final_error_event(
    serve: Any, engine_factory: Any, waiter: Any
) -> None:
    engine = engine_factory(delay=0.05)  # 60 tokens: far longer than the one-second grace period
    server = serve(engine, grace_period=1.0, max_tokens_cap=1000)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    body = {"prompt": "a", "max_tokens": 1000, "stream": True}
    events: list[str] = []
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        events.append(next(line for line in lines if line.startswith("data: {")))
        server.server.should_exit = True  # what SIGTERM does
        events.extend(line for line in lines if line.startswith("data: "))
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["error"]["code"] == 503 and "grace period" in last["error"]["message"]
    assert all(json.loads(e.removeprefix("data: ")) for e in events[:-1])  # every event whole


def test_a_connection_that_never_finishes_its_headers_is_closed(serve: Any, engine_factory: Any) -> None:
    server = serve(engine_factory(), header_timeout=0.5)
    with (
        socket.create_connection((server.host, server.port), timeout=60) as idle,
        socket.create_connection((server.host, server.port), timeout=60) as half,
    ):
        half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert half.recv(1024) == b""  # closed by the server (a recv timeout would raise instead)
        assert idle.recv(1024) == b""
    with socket.create_connection((server.host, server.port), timeout=60) as kept:
        kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'"Server is running"}'):
            answer += kept.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET / HT")  # a second request begun on the kept-alive connection, never ended
        assert kept.recv(1024) == b""


def test_a_client_that_leaves_the_queue_leaves_it_at_once(
    serve: Any, engine_factory: Any, waiter: Any
) -> None:
    engine = engine_factory(delay=0.05)
    server = serve(engine, max_concurrency=1, queue_size=4, max_tokens_cap=1000)
    waiter(lambda: httpx.get(server.url + "/health").status_code == 200)
    long = {"prompt": "a", "max_tokens": 1000, "stream": True}

    def depth() -> float:
        for line in httpx.get(server.url + "/metrics").text.splitlines():
            if line.startswith("kaito_queue_depth "):
                return float(line.split()[1])
        return -1.0

    with httpx.stream("POST", server.url + "/v1/completions", json=long, timeout=60) as running:
        lines = running.iter_lines()  # kept: a generator dropped would close the stream
        next(line for line in lines if line.startswith("data: {"))
        with socket.create_connection((server.host, server.port), timeout=60) as queued:
            body = json.dumps({"prompt": "b", "max_tokens": 2}).encode()
            queued.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            waiter(lambda: depth() == 1)
        waiter(lambda: depth() == 0)  # gone from the queue while the first request still runs
        assert engine.running == 1
