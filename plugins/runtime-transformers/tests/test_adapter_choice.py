"""Per-request adapter choice on the transformers runtime (SamplingParams.adapter): None, every adapter
at its strength; "", the base model (peft's disable_adapter); a name, that adapter alone at its strength.
Generations run one at a time, so each applies its own choice; greedy answers compared with engines
that hold only that model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kaito_runtime_transformers.engine import TransformersEngine
from kaito_testing.tiny_llama import make_adapter

from kaito_core.plugins import EngineConfig, RequestError, SamplingParams

PROMPT = "what colour is the sky"


async def _answers(engine: TransformersEngine, choices: list[str | None]) -> list[str]:
    await engine.load()
    try:

        async def one(choice: str | None) -> str:
            params = SamplingParams(max_tokens=12, greedy=True, ignore_eos=True, adapter=choice)
            return "".join([c.text async for c in engine.stream(PROMPT, params)])

        return list(await asyncio.gather(*(one(c) for c in choices)))
    finally:
        await engine.close()


def _engine(model: Path, adapters: dict[str, Path], **strengths: float) -> TransformersEngine:
    options = {f"strength.{name}": value for name, value in strengths.items()}
    paths = {name: str(path) for name, path in adapters.items()}
    return TransformersEngine(EngineConfig(str(model), "tiny", adapters=paths, options=options))


def test_each_request_runs_its_own_adapter_choice(tiny_model: Path, tmp_path: Path) -> None:
    one = make_adapter(tiny_model, tmp_path / "one", seed=1)
    two = make_adapter(tiny_model, tmp_path / "two", seed=2)
    # all at once: the choices alternate between generations of one engine
    mixed = asyncio.run(
        _answers(_engine(tiny_model, {"one": one, "two": two}, two=0.5), ["one", "", None, "two", "", "one"])
    )
    (base,) = asyncio.run(_answers(_engine(tiny_model, {}), [None]))
    (alone_one,) = asyncio.run(_answers(_engine(tiny_model, {"one": one}), [None]))
    (alone_two,) = asyncio.run(_answers(_engine(tiny_model, {"two": two}, two=0.5), [None]))
    (both,) = asyncio.run(_answers(_engine(tiny_model, {"one": one, "two": two}, two=0.5), [None]))
    assert len({base, alone_one, alone_two, both}) == 4  # four different models
    assert mixed == [alone_one, base, both, alone_two, base, alone_one]


def test_an_unknown_adapter_is_refused_by_name(tiny_model: Path, tmp_path: Path) -> None:
    engine = _engine(tiny_model, {"one": make_adapter(tiny_model, tmp_path / "one")})
    with pytest.raises(RequestError, match="no adapter named 'nope'") as caught:
        asyncio.run(_answers(engine, ["nope"]))
    assert caught.value.status == 404
