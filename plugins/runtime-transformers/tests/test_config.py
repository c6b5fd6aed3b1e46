"""training_config.yaml: KAITO's sections and keys, the method defaults, refusals naming the key."""

from __future__ import annotations

import pytest
from kaito_runtime_transformers import config


def test_lora_defaults_are_kaitos() -> None:
    cfg = config.parse(None, "lora")
    assert (cfg.lora["r"], cfg.lora["lora_alpha"], cfg.lora["lora_dropout"]) == (8, 8, 0.0)
    assert cfg.training["output_dir"] == "/mnt/results"
    assert not cfg.quantized


def test_qlora_defaults_quantize_nf4_with_bf16_compute_and_double_quant() -> None:
    cfg = config.parse(None, "qlora")
    assert cfg.quantization == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_use_double_quant": True,
    }


def test_user_sections_lay_over_the_defaults() -> None:
    cfg = config.parse(
        "training_config:\n  LoraConfig:\n    r: 16\n  TrainingArguments:\n    max_steps: 3\n", "lora"
    )
    assert cfg.lora["r"] == 16 and cfg.lora["lora_alpha"] == 8
    assert cfg.training["max_steps"] == 3 and cfg.training["output_dir"] == "/mnt/results"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training_config:\n  Lora:\n    r: 1\n", "training_config.Lora: unknown section"),
        (
            "training_config:\n  TrainingArguments:\n    max_step: 3\n",
            "training_config.TrainingArguments.max_step: unknown key",
        ),
        ("training_config:\n  LoraConfig:\n    rank: 3\n", "training_config.LoraConfig.rank: unknown key"),
        (
            "training_config:\n  DatasetConfig:\n    columns: x\n",
            "training_config.DatasetConfig.columns: unknown key",
        ),
        (
            "training_config:\n  DataCollator:\n    mlm_prob: 1\n",
            "training_config.DataCollator.mlm_prob: unknown key",
        ),
        (
            "training_config:\n  ModelConfig:\n    revision_x: 1\n",
            "training_config.ModelConfig.revision_x: unknown key",
        ),
        (
            "training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n",
            "method lora does not quantize",
        ),
        (
            "training_config:\n  DatasetConfig:\n    train_test_split: 2\n",
            "train_test_split: 2 must be a number in (0, 1]",
        ),
        ("training_config: [1]\n", "must hold a mapping under training_config"),
        ("a: [\n", "is not YAML"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(config.TrainingConfigError, match=None) as info:
        config.parse(text, "lora")
    assert message in str(info.value)


def test_qlora_without_quantization_is_refused() -> None:
    text = "training_config:\n  QuantizationConfig:\n    load_in_4bit: false\n"
    with pytest.raises(config.TrainingConfigError, match="method qlora needs load_in_4bit"):
        config.parse(text, "qlora")


def test_unknown_method_is_refused() -> None:
    with pytest.raises(config.TrainingConfigError, match="Unsupported tuning method full"):
        config.parse(None, "full")
