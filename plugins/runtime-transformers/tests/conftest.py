"""A tiny causal language model made offline (random weights, a tokenizer trained here) and chat data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
QUESTIONS = ["what colour is the sky", "name a colour", "what is the sky like", "tell me about the sky",
             "say something", "which colour do you like"]  # fmt: skip
ANSWER = "the sky is blue and the sea is green"


def corpus() -> list[str]:
    return [*QUESTIONS, ANSWER, "a b c d e f g h i j k l m n o p q r s t u v w x y z", "hello world"] * 4


def make_tiny_model(out: Path) -> Path:
    """A 2-layer Llama with random weights (seed 0) and a byte-level BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bpe = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), bpe)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


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
