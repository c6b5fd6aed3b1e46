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


#: a system prompt longer than Gemma 3's 512-token sliding window, which every user sends; what it says
#: first is what the answers need
LONG_SYSTEM = "<start_of_turn>user\nRemember this: the secret word is marmalade. " + " ".join(
    f"The square of {i} is {i * i}, and {i} plus {i} is {2 * i}." for i in range(1, 31)
) + "\n"
TURNS = [
    ("What is the secret word?", "The secret word is"),
    ("Repeat the secret word.", "Sure. The secret word is"),
    ("Tell me the secret word.", "OK, the secret word is"),
    ("What was the word to remember?", "The word to remember is"),
]
WITH_LOGPROBS = SamplingParams(max_tokens=3, greedy=True, temperature=0.0, logprobs=1)


def _pooled(model: Path, prefix_cache: bool) -> LlamaCppEngine:
    options: dict[str, object] = {"prefix_cache": prefix_cache, "kv_cells": 4 * 1024}
    return LlamaCppEngine(EngineConfig(model_path=str(model), served_model_name="g", context_length=1024,
                                       threads=2, max_batch=4, options=options))  # fmt: skip


async def _at_once(engine: LlamaCppEngine, prompts: list[str]) -> list[list[tuple[str, float]]]:
    """Every prompt at once: each answer's tokens with their log-probabilities."""
    await engine.load()
    try:

        async def one(prompt: str) -> list[tuple[str, float]]:
            return [(c.text, c.logprobs[0].logprob) async for c in engine.stream(prompt, WITH_LOGPROBS)]

        return list(await asyncio.gather(*(one(p) for p in prompts)))
    finally:
        await engine.close()


def test_users_sending_one_system_prompt_at_once_share_its_cells(gemma_path: Path) -> None:
    prompts = [f"{LONG_SYSTEM}{q}<end_of_turn>\n<start_of_turn>model\n{a}" for q, a in TURNS]
    sharing, alone = _pooled(gemma_path, prefix_cache=True), _pooled(gemma_path, prefix_cache=False)
    shared_answers = asyncio.run(_at_once(sharing, prompts))
    own_answers = asyncio.run(_at_once(alone, prompts))
    # every user read the word at the start of the prefix they took from the first
    assert all("".join(t for t, _ in answer).startswith(" marmalade") for answer in shared_answers)
    for shared, own in zip(shared_answers, own_answers, strict=True):
        assert [t for t, _ in shared] == [t for t, _ in own]
        # the same distribution up to the rounding of other batch shapes (a changed chunking alone moves
        # Gemma's log-probabilities by a few hundredths)
        assert all(abs(a - b) < 0.25 for (_, a), (_, b) in zip(shared, own, strict=True))
    # the system prompt is over 600 tokens, past the sliding window: three users took it from the first
    assert sharing.shared_tokens + sharing.reused_tokens >= 3 * 600
    assert alone.shared_tokens == alone.reused_tokens == 0


def test_another_user_copies_the_system_prompt_and_leaves_the_first_one_cached(gemma_path: Path) -> None:
    engine = _pooled(gemma_path, prefix_cache=True)
    longer = SamplingParams(max_tokens=40, greedy=True, temperature=0.0, ignore_eos=True)

    async def scenario() -> list[str]:
        await engine.load()
        try:
            answers = []
            first = f"{LONG_SYSTEM}{TURNS[0][0]}<end_of_turn>\n<start_of_turn>model\n"
            other = f"{LONG_SYSTEM}{TURNS[1][0]}<end_of_turn>\n<start_of_turn>model\n{TURNS[1][1]}"
            for prompt in (first, other):
                answers.append("".join([c.text async for c in engine.stream(prompt, longer)]))
            reused = engine.reused_tokens
            assert reused >= 600  # the second user copied the system prompt out of the first's cache
            again = f"{first}{answers[0]}<end_of_turn>\n<start_of_turn>user\n{TURNS[2][0]}<end_of_turn>\n"
            again += "<start_of_turn>model\n"
            answers.append("".join([c.text async for c in engine.stream(again, longer)]))
            # the first conversation found all of its first turn still cached, not just the system prompt
            assert engine.reused_tokens - reused >= engine.count_tokens(first) + 2
            return answers
        finally:
            await engine.close()

    answers = asyncio.run(scenario())
    assert answers[1].startswith(" marmalade")
