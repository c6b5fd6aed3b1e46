"""A scriptable Engine for the server's own policy (loading, stalls, queueing, auth, disconnects).

The end-to-end tests against the real model live in plugins/runtime-llamacpp/tests; these drive the
states a real model cannot be put in on demand (still loading, stalled, failed to load).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest

from kaito_core.plugins import ChatMessage, Chunk, EngineHealth, SamplingParams
from kaito_core.serving.server import RunningServer, start_in_thread
from kaito_core.serving.settings import ServerSettings


class ScriptedEngine:
    """Generates "w0 w1 w2 ..." one word per token, `delay` seconds apart."""

    def __init__(
        self, delay: float = 0.0, fail_load: str | None = None, fail_after: int | None = None
    ) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self.fail_load = fail_load
        self.release_load = threading.Event()
        self.release_load.set()
        self.loaded = False
        self.running = 0
        self.started = 0
        self.cancelled = 0
        self.last_progress = time.monotonic()
        self.stalled = False
        self.dead: str | None = None
        self.counted = 0  # texts count_tokens finished
        self.counting = 0  # count_tokens calls begun
        #: when set to an Event, count_tokens waits for it (a tokenizer that takes its time)
        self.tokenizing: threading.Event | None = None

    @property
    def context_length(self) -> int:
        return 64

    async def load(self) -> None:
        await asyncio.to_thread(self.release_load.wait)
        if self.fail_load:
            raise RuntimeError(self.fail_load)
        self.loaded = True

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        self.running += 1
        self.started += 1
        done = False
        try:
            for i in range(params.max_tokens):
                while self.stalled:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(self.delay)
                if self.fail_after is not None and i == self.fail_after and self.loaded and self.started > 1:
                    raise RuntimeError("llama_decode failed with -3")
                self.last_progress = time.monotonic()
                last = i == params.max_tokens - 1
                yield Chunk(f" w{i}", tokens=1, finish_reason="length" if last else None)
            done = True
        finally:
            self.running -= 1
            if not done:
                self.cancelled += 1

    def count_tokens(self, text: str) -> int:
        self.counting += 1
        if self.tokenizing is not None:
            self.tokenizing.wait(60)
        self.counted += 1
        return len(text.split())

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return " ".join(m.content for m in messages)

    def health(self) -> EngineHealth:
        return EngineHealth(
            loaded=self.loaded,
            alive=self.dead is None,
            error=self.dead,
            last_progress=self.last_progress,
            running=self.running,
        )

    async def close(self) -> None:
        pass


@pytest.fixture
def serve() -> Iterator:
    servers: list[RunningServer] = []

    def start(engine: ScriptedEngine, **settings: object) -> RunningServer:
        options: dict = {"served_model_name": "scripted", **settings}
        server = start_in_thread(engine, ServerSettings(**options))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=10)


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def healthy(url: str) -> bool:
    return httpx.get(url + "/health").status_code == 200


@pytest.fixture
def engine_factory():  # type: ignore[no-untyped-def]
    return ScriptedEngine


@pytest.fixture
def waiter():  # type: ignore[no-untyped-def]
    return wait_for
