"""A tiny causal language model made offline (random weights, a tokenizer trained here) and chat data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaito_testing.tiny_llama import ANSWER, CHAT_TEMPLATE, QUESTIONS, corpus, make_tiny_model

__all__ = ["ANSWER", "CHAT_TEMPLATE", "QUESTIONS", "corpus", "make_tiny_model"]


def make_chat_parquet(path: Path, repeat: int = 3) -> Path:
    """A chat-style parquet like dolly-15k in OpenAI style: a ``messages`` column of turns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [[{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}] for q in QUESTIONS]
    pq.write_table(pa.table({"messages": rows * repeat}), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def chat_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chat_parquet(tmp_path_factory.mktemp("data") / "train.parquet")


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


#: A fast LoRA run: a high learning rate so a few steps change the answers of a random model.
FAST_CONFIG = """
training_config:
  LoraConfig:
    r: 8
    lora_alpha: 16
    target_modules: all-linear
  TrainingArguments:
    max_steps: 12
    learning_rate: 0.01
    per_device_train_batch_size: 2
    save_steps: 6
    logging_steps: 1
    lr_scheduler_type: constant
  DatasetConfig:
    max_length: 64
"""
