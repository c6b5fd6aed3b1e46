"""The prompt-prefix cache on the real Gemma 3 270M: later turns of a chat reuse the KV cells of the
earlier ones, and the text is the same as computing every prompt from scratch. (Eviction under a
short pool is the scheduler's bookkeeping, tested in test_scheduler.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kaito_runtime_llamacpp.engine import LlamaCppEngine

from kaito_core.plugins import EngineConfig, SamplingParams

SYSTEM = "<start_of_turn>user\nYou are a terse assistant. Answer in one short sentence.\n"
TURNS = ["What is the capital of France?", "And of Italy?", "Which one is larger?"]
GREEDY = SamplingParams(max_tokens=12, greedy=True, temperature=0.0)


def _engine(model: Path, prefix_cache: bool) -> LlamaCppEngine:
    options: dict[str, object] = {"prefix_cache": prefix_cache}
    return LlamaCppEngine(EngineConfig(model_path=str(model), served_model_name="g", context_length=512,
                                       threads=2, max_batch=2, options=options))  # fmt: skip


async def _chat(engine: LlamaCppEngine) -> list[str]:
    """Three turns, each prompt the whole conversation so far, as a chat client sends them."""
    await engine.load()
    try:
        replies: list[str] = []
        history = SYSTEM
        for turn in TURNS:
            history += f"{turn}<end_of_turn>\n<start_of_turn>model\n"
            reply = "".join([chunk.text async for chunk in engine.stream(history, GREEDY)])
            replies.append(reply)
            history += f"{reply}<end_of_turn>\n<start_of_turn>user\n"
        return replies
    finally:
        await engine.close()


def test_later_turns_reuse_the_cache_and_answer_the_same(gemma_path: Path) -> None:
    cached = _engine(gemma_path, prefix_cache=True)
    uncached = _engine(gemma_path, prefix_cache=False)
    with_cache = asyncio.run(_chat(cached))
    without = asyncio.run(_chat(uncached))
    assert with_cache == without
    # turn 1's prompt is over 20 tokens: turns 2 and 3 each resumed past at least that much
    assert cached.reused_tokens > 40
    assert uncached.reused_tokens == 0
