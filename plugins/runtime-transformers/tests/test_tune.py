"""The CPU loop for real: a LoRA run of a few steps on the tiny model whose loss goes down, its adapter
files, a resume from a checkpoint, the data shapes, and the adapter served at strength 0, 0.5 and 1."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from kaito_runtime_transformers import config, data
from kaito_runtime_transformers.engine import EngineError, TransformersEngine
from kaito_runtime_transformers.metrics import TrainingMetrics
from kaito_runtime_transformers.train import ADAPTER_FILES, CHECKPOINTS, DONE_FILE, tune

from kaito_core.plugins import EngineConfig, SamplingParams

from .conftest import ANSWER, FAST_CONFIG, write_jsonl

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tuned(
    tiny_model: Path, chat_parquet: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp("adapter")
    metrics = TrainingMetrics()
    result = tune(
        tiny_model, [chat_parquet], config.parse(FAST_CONFIG, "lora"), out, metrics=metrics, progress=False
    )
    assert result.steps == 12
    assert metrics.steps._value.get() == 12 and metrics.loss._value.get() == result.losses[-1]
    return out, list(result.losses)


def test_lora_loss_goes_down_and_the_adapter_is_written(tuned: tuple[Path, list[float]]) -> None:
    out, losses = tuned
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    for name in ADAPTER_FILES:
        assert (out / name).is_file()
    assert (out / DONE_FILE).is_file()
    assert (out / CHECKPOINTS / "checkpoint-12").is_dir()


def test_a_preempted_run_resumes_from_its_newest_checkpoint(
    tiny_model: Path, chat_parquet: Path, tuned: tuple[Path, list[float]], tmp_path: Path
) -> None:
    out, _ = tuned
    shutil.copytree(out / CHECKPOINTS / "checkpoint-6", tmp_path / CHECKPOINTS / "checkpoint-6")
    result = tune(tiny_model, [chat_parquet], config.parse(FAST_CONFIG, "lora"), tmp_path, progress=False)
    assert result.resumed_from is not None and result.resumed_from.endswith("checkpoint-6")
    assert result.steps == 12 and len(result.losses) == 6  # only steps 7-12 were trained


def test_prompt_completion_and_text_columns(tmp_path: Path) -> None:
    rows = [{"question": "q", "answer": "a", "other": 1}]
    dataset = data.load([write_jsonl(tmp_path / "d.jsonl", rows)],
                        {"context_column": "question", "response_column": "answer"})  # fmt: skip
    assert dataset.column_names == ["prompt", "completion"]
    (tmp_path / "t.csv").write_text("body,x\nhello,1\n")
    assert data.load([tmp_path / "t.csv"], {"response_column": "body"}).column_names == ["text"]
    with pytest.raises(
        data.DatasetError, match=r"DatasetConfig\.context_column: the data has no column .nope."
    ):
        data.load([tmp_path / "d.jsonl"], {"context_column": "nope"})
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(data.DatasetError, match=r"unsupported data file type .\.txt."):
        data.data_files([tmp_path / "x.txt"])


def test_qlora_is_refused_on_a_cpu(tiny_model: Path, chat_parquet: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: QLoRA runs here (nox -s gpu-check)")
    with pytest.raises(config.TrainingConfigError, match="needs an NVIDIA GPU"):
        tune(tiny_model, [chat_parquet], config.parse(None, "qlora"), tmp_path, progress=False)


def test_kaito_tune_checks_config_before_loading(
    tiny_model: Path, chat_parquet: Path, tmp_path: Path
) -> None:
    from kaito_core.cli.main import cli

    bad = tmp_path / "training_config.yaml"
    bad.write_text("training_config:\n  TrainingArguments:\n    max_step: 1\n")
    result = CliRunner().invoke(cli, ["tune", "--model", str(tiny_model), "--data", str(chat_parquet),
                                      "--config", str(bad), "--output", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code != 0 and "TrainingArguments.max_step: unknown key" in result.output
    ok = CliRunner().invoke(cli, ["tune", "--model", str(tiny_model), "--data", str(chat_parquet), "--check"])
    assert ok.exit_code == 0, ok.output


def answer(engine: TransformersEngine, prompt: str) -> str:
    async def run() -> str:
        await engine.load()
        parts = [c.text async for c in engine.stream(prompt, SamplingParams(max_tokens=12, greedy=True))]
        await engine.close()
        return "".join(parts)

    return asyncio.run(run())


def test_the_adapter_is_served_at_its_strength(tiny_model: Path, tuned: tuple[Path, list[float]]) -> None:
    out, _ = tuned

    def engine(strength: float | None) -> TransformersEngine:
        adapters = {} if strength is None else {"tuned": str(out)}
        options = {} if strength is None else {"strength.tuned": strength}
        return TransformersEngine(EngineConfig(str(tiny_model), "tiny", adapters=adapters, options=options))

    prompt = "<|user|>what colour is the sky</s><|assistant|>"
    base = answer(engine(None), prompt)
    assert answer(engine(0.0), prompt) == base  # strength 0: the base model's answer
    full = answer(engine(1.0), prompt)
    assert full != base and ANSWER.startswith(full.strip()[:6])
    answer(engine(0.5), prompt)  # loads and answers
    with pytest.raises(EngineError, match=r"strength 2\.0 is not in"):
        engine(2.0)
