"""The batched engine itself, driven directly (the model is the one `gemma_server` loaded)."""

from __future__ import annotations

import asyncio
from typing import Any

from kaito_core.serving.engine import SamplingParams


async def _generate(engine: Any, prompt: str, params: SamplingParams) -> tuple[str, int, str | None]:
    text, tokens, finish = "", 0, None
    async for chunk in engine.stream(prompt, params):
        text += chunk.text
        tokens += chunk.tokens
        finish = chunk.finish_reason or finish
    return text, tokens, finish


def test_fast_greedy_picks_what_the_sampler_chain_picks(gemma_server: Any) -> None:
    engine = gemma_server.engine
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
    params = [
        SamplingParams(max_tokens=12, greedy=True),
        SamplingParams(max_tokens=12, greedy=True, ignore_eos=True),
    ]

    async def each() -> list[tuple[str, int, str | None]]:
        # one at a time: batch composition changes float rounding, and greedy follows the rounding
        return [await _generate(engine, p, sp) for p in prompts for sp in params]

    try:
        engine.fast_greedy = True
        fast = asyncio.run(each())
        engine.fast_greedy = False
        chain = asyncio.run(each())
    finally:
        engine.fast_greedy = True
    assert fast == chain
    assert all(tokens == 12 for _, tokens, _ in fast[1::2])  # ignore_eos: always the full length


def test_sampling_with_a_seed_is_reproducible(gemma_server: Any) -> None:
    engine = gemma_server.engine
    params = SamplingParams(max_tokens=10, temperature=0.9, top_k=40, top_p=0.95, seed=1234, ignore_eos=True)
    first = asyncio.run(_generate(engine, "My favourite animal is", params))
    second = asyncio.run(_generate(engine, "My favourite animal is", params))
    assert first == second and first[1] == 10
