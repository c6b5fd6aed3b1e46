"""The batched engine itself, driven directly (the model is the one `gemma_server` loaded)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from kaito_runtime_llamacpp.engine import EngineError, LlamaCppEngine

from kaito_core.plugins import EngineConfig, SamplingParams


async def _generate(engine: Any, prompt: str, params: SamplingParams) -> tuple[str, int, str | None]:
    text, tokens, finish = "", 0, None
    async for chunk in engine.stream(prompt, params):
        text += chunk.text
        tokens += chunk.tokens
        finish = chunk.finish_reason or finish
    return text, tokens, finish


Generated = list[tuple[str, int, str | None]]


def _with_and_without(
    engine: Any, shortcut: str, prompts: list[str], params: list[SamplingParams]
) -> tuple[Generated, Generated]:
    """Every prompt with every params, one at a time (batch composition changes float rounding, and
    greedy follows the rounding), with the picker's ``shortcut`` on, then off."""

    async def each() -> Generated:
        return [await _generate(engine, p, sp) for p in prompts for sp in params]

    try:
        setattr(engine.picker, shortcut, True)
        fast = asyncio.run(each())
        setattr(engine.picker, shortcut, False)
        slow = asyncio.run(each())
    finally:
        setattr(engine.picker, shortcut, True)
    return fast, slow


def test_fast_greedy_picks_what_the_sampler_chain_picks(gemma_server: Any) -> None:
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
    params = [
        SamplingParams(max_tokens=12, greedy=True),
        SamplingParams(max_tokens=12, greedy=True, ignore_eos=True),
    ]
    fast, chain = _with_and_without(gemma_server.engine, "fast_greedy", prompts, params)
    assert fast == chain
    assert all(tokens == 12 for _, tokens, _ in fast[1::2])  # ignore_eos: always the full length


def test_top_k_sampling_draws_from_its_candidates_what_the_vocabulary_gives(gemma_server: Any) -> None:
    prompts = ["Once upon a time", "My favourite animal is"]
    sampled = SamplingParams(max_tokens=24, temperature=0.8, top_k=40, seed=7)
    params = [
        sampled,
        dataclasses.replace(sampled, top_p=0.95, min_p=0.05, ignore_eos=True, seed=11),
        dataclasses.replace(sampled, typical_p=0.9, temperature=1.5, top_k=200, min_tokens=8),
    ]
    fast, whole = _with_and_without(gemma_server.engine, "fast_top_k", prompts, params)
    assert fast == whole
    assert len({text for text, _, _ in fast}) == len(fast)  # every request drew a text of its own


def test_sampling_with_a_seed_is_reproducible(gemma_server: Any) -> None:
    engine = gemma_server.engine
    params = SamplingParams(max_tokens=10, temperature=0.9, top_k=40, top_p=0.95, seed=1234, ignore_eos=True)
    first = asyncio.run(_generate(engine, "My favourite animal is", params))
    second = asyncio.run(_generate(engine, "My favourite animal is", params))
    assert first == second and first[1] == 10


@pytest.mark.parametrize("kv", [{"kv_cells": 1024}, {"kv_unified": False}], ids=["pool", "slices"])
def test_a_long_prompt_is_prefilled_in_chunks_while_others_decode(gemma_path: Any, kv: dict) -> None:
    config = EngineConfig(
        model_path=str(gemma_path), served_model_name="g", context_length=512, threads=2, max_batch=4,
        options={"n_batch": 64, **kv},
    )  # fmt: skip
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 45  # ~450 tokens: 8 chunks of 64

    async def run(engine: LlamaCppEngine) -> tuple[list[tuple[str, int, str | None]], int]:
        await engine.load()
        try:
            assert 400 < engine.count_tokens(long_prompt) < engine.context_length
            params = SamplingParams(max_tokens=48, ignore_eos=True, greedy=True)
            started = [asyncio.ensure_future(_generate(engine, f"Fact {i}:", params)) for i in range(3)]
            while engine.health().running < 3:  # the short ones are running now
                await asyncio.sleep(0.01)
            steps = engine.steps
            long = await _generate(
                engine, long_prompt, SamplingParams(max_tokens=4, ignore_eos=True, greedy=True)
            )
            return [long, *await asyncio.gather(*started)], engine.steps - steps
        finally:
            await engine.close()

    engine = LlamaCppEngine(config)
    results, steps = asyncio.run(run(engine))
    assert [tokens for _, tokens, _ in results] == [4, 48, 48, 48]
    assert all(text for text, _, _ in results)
    assert steps >= 8 + 4  # the prompt took several steps (each also advancing the three decoders)
    assert engine.max_observed_batch == 4


def test_window_size_swa_caches_generate_what_full_ones_do(gemma_path: Any) -> None:
    """swa_full off (the default) keeps only Gemma 3's sliding window per sequence; a prompt longer
    than the window (512) must still give the greedy text full-size caches give. The default engine
    also loads through start_loading(), as `kaito serve` does."""
    prompt = " ".join(f"Item {i} is a {('red', 'blue', 'green')[i % 3]} box." for i in range(110)) + " So"

    async def run(engine: LlamaCppEngine) -> list[tuple[str, int, str | None]]:
        await engine.load()
        try:
            assert 600 < engine.count_tokens(prompt) < engine.context_length
            params = SamplingParams(max_tokens=8, ignore_eos=True, greedy=True)
            # one at a time: batch composition changes float rounding, and greedy follows the rounding
            return [await _generate(engine, p, params) for p in (prompt, "Hi")]
        finally:
            await engine.close()

    def config(**options: Any) -> EngineConfig:
        return EngineConfig(
            model_path=str(gemma_path), served_model_name="g", context_length=1024, threads=2, max_batch=2,
            options=options,
        )  # fmt: skip

    windowed = LlamaCppEngine(config())
    windowed.start_loading()
    assert asyncio.run(run(windowed)) == asyncio.run(run(LlamaCppEngine(config(swa_full=True))))


def test_a_load_started_early_that_fails_fails_load(tmp_path: Any) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    engine = LlamaCppEngine(EngineConfig(model_path=str(tmp_path / "broken.gguf"), served_model_name="x"))
    engine.start_loading()

    async def run() -> None:
        try:
            await engine.load()
        finally:
            await engine.close()

    with pytest.raises(EngineError, match="could not load"):
        asyncio.run(run())


def _counting(start: int, count: int) -> str:
    return ", ".join(str(i) for i in range(start, start + count)) + ","


def _continues_counting(prompt_last: int, text: str) -> bool:
    """True when `text` goes on counting from prompt_last + 1 with no number skipped or repeated (the
    last number may be cut off by max_tokens)."""
    numbers = [int(part) for part in text.replace(",", " ").split() if part.isdigit()]
    expected = list(range(prompt_last + 1, prompt_last + 1 + len(numbers)))
    return len(numbers) >= 5 and (numbers == expected or numbers[:-1] == expected[:-1])


def test_a_full_kv_pool_preempts_the_latest_sequence_which_resumes_where_it_was(gemma_path: Any) -> None:
    """The default KV cache is one shared pool of one context's cells (here 256). Two sequences that
    both fit when admitted outgrow it while generating: the one admitted last is preempted, waits, and
    is recomputed from its prompt plus what it had generated. Each client still gets every token, and
    the text goes on exactly where it was (the model counts: a lost or repeated token would show)."""
    config = EngineConfig(
        model_path=str(gemma_path), served_model_name="g", context_length=256, threads=2, max_batch=4,
    )  # fmt: skip
    prompts = [_counting(1, 14), _counting(500, 12)]
    params = SamplingParams(max_tokens=110, ignore_eos=True, greedy=True)

    async def run(engine: LlamaCppEngine) -> list[tuple[str, int, str | None]]:
        await engine.load()
        try:
            assert engine.context_length == 256
            assert sum(engine.count_tokens(p) for p in prompts) < 150  # both are admitted at once
            return list(await asyncio.gather(*(_generate(engine, p, params) for p in prompts)))
        finally:
            await engine.close()

    engine = LlamaCppEngine(config)
    results = asyncio.run(run(engine))
    assert engine.preemptions >= 1
    assert engine.max_observed_batch == 2  # they did run together before the pool filled
    assert [(tokens, finish) for _, tokens, finish in results] == [(110, "length"), (110, "length")]
    assert _continues_counting(14, results[0][0]), results[0][0]
    assert _continues_counting(511, results[1][0]), results[1][0]


def test_a_request_waits_for_cells_instead_of_failing(gemma_path: Any) -> None:
    """Admission by free cells: a prompt that does not fit beside the running sequences waits for them
    (it is not refused, and nothing is preempted to start it)."""
    config = EngineConfig(
        model_path=str(gemma_path), served_model_name="g", context_length=256, threads=2, max_batch=4,
    )  # fmt: skip
    long_prompt = _counting(1, 50)
    other_prompt = "Count on: " + _counting(100, 45)  # nothing in common with the first: no cells to share

    async def run(engine: LlamaCppEngine) -> list[tuple[str, int, str | None]]:
        await engine.load()
        try:
            assert 150 < engine.count_tokens(long_prompt) < 250
            assert 150 < engine.count_tokens(other_prompt) < 250
            first = asyncio.ensure_future(
                _generate(engine, long_prompt, SamplingParams(max_tokens=20, ignore_eos=True, greedy=True))
            )
            while engine.health().running < 1:
                await asyncio.sleep(0.01)
            second = await _generate(
                engine, other_prompt, SamplingParams(max_tokens=5, ignore_eos=True, greedy=True)
            )
            return [await first, second]
        finally:
            await engine.close()

    engine = LlamaCppEngine(config)
    results = asyncio.run(run(engine))
    assert [tokens for _, tokens, _ in results] == [20, 5]
    assert engine.preemptions == 0
    assert engine.max_observed_batch == 1  # the second started once the first had finished


def test_per_sequence_kv_slices_on_request(gemma_path: Any) -> None:
    """kv_unified=false: each sequence gets a context of its own (n_ctx = context x max_batch), so
    sequences that together exceed one context run side by side without preemption."""
    config = EngineConfig(
        model_path=str(gemma_path), served_model_name="g", context_length=256, threads=2, max_batch=2,
        options={"kv_unified": "false"},
    )  # fmt: skip
    prompts = [_counting(1, 14), _counting(500, 12)]
    params = SamplingParams(max_tokens=110, ignore_eos=True, greedy=True)

    async def run(engine: LlamaCppEngine) -> list[tuple[str, int, str | None]]:
        await engine.load()
        try:
            return list(await asyncio.gather(*(_generate(engine, p, params) for p in prompts)))
        finally:
            await engine.close()

    engine = LlamaCppEngine(config)
    results = asyncio.run(run(engine))
    assert engine.context_length == 256 and engine.preemptions == 0
    assert [tokens for _, tokens, _ in results] == [110, 110]
    assert _continues_counting(14, results[0][0]) and _continues_counting(511, results[1][0])


def test_a_bad_kv_cells_option_is_a_clear_error(gemma_path: Any) -> None:
    engine = LlamaCppEngine(
        EngineConfig(model_path=str(gemma_path), served_model_name="g", options={"kv_cells": "lots"})
    )

    async def run() -> None:
        try:
            await engine.load()
        finally:
            await engine.close()

    with pytest.raises(EngineError, match="kv_cells must be a whole number"):
        asyncio.run(run())


def test_more_sequences_than_the_pool_holds_all_finish(gemma_path: Any) -> None:
    """Eight sequences that need about twice the pool between them: preemption must not turn into a
    loop (a preempted sequence re-admitted at once would be preempted again for ever): after one,
    nothing is admitted until a sequence ends."""
    config = EngineConfig(
        model_path=str(gemma_path), served_model_name="g", context_length=256, threads=2, max_batch=8,
    )  # fmt: skip
    params = SamplingParams(max_tokens=48, ignore_eos=True, greedy=True)

    async def run(engine: LlamaCppEngine) -> list[tuple[str, int, str | None]]:
        await engine.load()
        try:
            jobs = (_generate(engine, f"Story {i}: a cat", params) for i in range(8))
            return list(await asyncio.wait_for(asyncio.gather(*jobs), timeout=240))
        finally:
            await engine.close()

    engine = LlamaCppEngine(config)
    results = asyncio.run(run(engine))
    assert [tokens for _, tokens, _ in results] == [48] * 8
    assert engine.preemptions <= 8  # at most one per sequence that ended
    assert engine.max_observed_batch >= 4
