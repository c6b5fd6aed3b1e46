"""Adapters chosen per request on llama.cpp: sequences under different adapters decode side by side (one
llama_decode per adapter set), and each answers exactly as it would alone. Over real HTTP with the
official openai client: /v1/models lists the base model and the adapter, ``model`` picks one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from kaito_runtime_llamacpp.engine import LlamaCppEngine

from kaito_core.plugins import EngineConfig, SamplingParams
from kaito_core.serving.server import RunningServer, start_in_thread
from kaito_core.serving.settings import ServerSettings

from .conftest import TinyLlama

PROMPT = "the sky is"


def _engine(tiny: TinyLlama, **options: object) -> LlamaCppEngine:
    options.setdefault("adapter_cache", str(tiny.gguf.parent / "lora-cache"))
    config = EngineConfig(model_path=str(tiny.gguf), served_model_name="tiny", context_length=128, threads=2,
                          max_batch=4, adapters={"tuned": str(tiny.adapter)}, options=options)  # fmt: skip
    return LlamaCppEngine(config)


async def _text(engine: LlamaCppEngine, prompt: str, adapter: str | None) -> str:
    params = SamplingParams(max_tokens=48, greedy=True, ignore_eos=True, adapter=adapter)
    return "".join([chunk.text async for chunk in engine.stream(prompt, params)])


def test_mixed_adapters_in_one_step_answer_as_each_alone(tiny_llama: TinyLlama) -> None:
    engine = _engine(tiny_llama, prefix_cache=False)

    async def run() -> None:
        await engine.load()
        try:
            alone = {choice: await _text(engine, PROMPT, choice) for choice in ("tuned", "", None)}
            assert alone["tuned"] != alone[""]  # the adapter answers differently
            assert alone[None] == alone["tuned"]  # the configured set: the one adapter at strength 1
            for _ in range(5):  # until the requests shared a step (they always do at once; be sure)
                choices = ["tuned", "", "tuned", ""]
                together = await asyncio.gather(*(_text(engine, PROMPT, c) for c in choices))
                assert together == [alone[c] for c in choices]
                if engine.mixed_steps:
                    break
            assert engine.mixed_steps > 0
        finally:
            await engine.close()

    asyncio.run(run())


def test_the_prefix_cache_never_crosses_adapters(tiny_llama: TinyLlama) -> None:
    engine = _engine(tiny_llama, prefix_cache=True)
    long_prompt = "what colour is the sky " * 6

    async def run() -> None:
        await engine.load()
        try:
            tuned = await _text(engine, long_prompt, "tuned")
            reused = engine.reused_tokens
            base = await _text(engine, long_prompt, "")  # the same tokens, cached under the adapter
            assert engine.reused_tokens == reused
            assert await _text(engine, long_prompt, "") == base  # now cached under the base: reused
            assert engine.reused_tokens > reused
            assert await _text(engine, long_prompt, "tuned") == tuned
        finally:
            await engine.close()
        fresh = _engine(tiny_llama, prefix_cache=False)
        await fresh.load()
        try:
            assert base == await _text(fresh, long_prompt, "")
        finally:
            await fresh.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def server(tiny_llama: TinyLlama) -> Iterator[RunningServer]:
    settings = ServerSettings(served_model_name="tiny", adapters=("tuned",), max_concurrency=4, max_n=4)
    running = start_in_thread(_engine(tiny_llama), settings)
    deadline = time.monotonic() + 120
    while httpx.get(running.url + "/health").status_code != 200:
        assert time.monotonic() < deadline, "the tiny model did not become healthy"
        time.sleep(0.05)
    yield running
    running.stop()


def test_openai_client_lists_and_picks_adapters(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    cards = list(client.models.list())
    assert [(c.id, (c.model_extra or {}).get("parent")) for c in cards] == [("tiny", None), ("tuned", "tiny")]

    def complete(model: str) -> str:
        answer = client.completions.create(model=model, prompt=PROMPT, max_tokens=24, temperature=0,
                                           extra_body={"ignore_eos": True})  # fmt: skip
        assert answer.model == model
        return answer.choices[0].text

    alone = {model: complete(model) for model in ("tuned", "tiny")}
    assert alone["tuned"] != alone["tiny"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        models = ["tuned", "tiny", "tiny", "tuned"]
        assert list(pool.map(complete, models)) == [alone[m] for m in models]
    kwargs = {"max_new_tokens": 24, "do_sample": False, "ignore_eos": True}
    body = {"prompt": PROMPT, "adapter": "tuned", "return_full_text": False, "generate_kwargs": kwargs}
    chat = httpx.post(server.url + "/chat", json=body)
    assert chat.status_code == 200 and chat.json()["Result"] == alone["tuned"]
    with pytest.raises(openai.NotFoundError, match="`tiny`, `tuned`"):
        complete("other")
