"""KAITO's ``training_config.yaml``: its sections, their keys, and the defaults for lora and qlora.

The file is the one KAITO's tuning reads (``training_config:`` holding ``ModelConfig``,
``QuantizationConfig``, ``LoraConfig``, ``TrainingArguments``, ``DatasetConfig``, ``DataCollator``).
Every key is checked before any model is loaded: an unknown section or key is refused with its path
(``TrainingArguments.max_step: unknown key; ...``), never ignored. The keys of ``LoraConfig``,
``TrainingArguments`` and ``QuantizationConfig`` are the fields of the classes they are passed to
(peft's ``LoraConfig``, trl's ``SFTConfig``, a ``TrainingArguments``, and transformers'
``BitsAndBytesConfig``), read from those classes, so a newer library's keys are accepted as they come.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

METHODS = ("lora", "qlora")
SECTIONS = (
    "ModelConfig",
    "QuantizationConfig",
    "LoraConfig",
    "TrainingArguments",
    "DatasetConfig",
    "DataCollator",
)
#: KAITO's ModelConfig keys (arguments of ``AutoModelForCausalLM.from_pretrained`` it passes on).
MODEL_KEYS = frozenset({
    "pretrained_model_name_or_path", "state_dict", "cache_dir", "from_tf", "force_download",
    "resume_download", "proxies", "output_loading_info", "allow_remote_files", "m_revision",
    "load_in_4bit", "load_in_8bit", "torch_dtype", "dtype", "chat_template", "device_map",
    "local_files_only", "trust_remote_code",
})  # fmt: skip
#: KAITO's DatasetConfig keys.
DATASET_KEYS = frozenset({
    "dataset_path", "shuffle_dataset", "shuffle_seed", "context_column", "response_column",
    "messages_column", "train_test_split", "max_length",
})  # fmt: skip
#: KAITO's DataCollator keys (``DataCollatorForLanguageModeling``'s arguments).
COLLATOR_KEYS = frozenset({"mlm", "mlm_probability", "pad_to_multiple_of", "return_tensors"})

#: KAITO's defaults: LoRA r 8, alpha 8, dropout 0; results under /mnt/results.
LORA_DEFAULTS: dict[str, Any] = {
    "ModelConfig": {"torch_dtype": "bfloat16", "local_files_only": True, "device_map": "auto"},
    "LoraConfig": {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"},
    "TrainingArguments": {
        "output_dir": "/mnt/results",
        "save_strategy": "epoch",
        "per_device_train_batch_size": 1,
        "ddp_find_unused_parameters": False,
    },
    "DatasetConfig": {"shuffle_dataset": True, "train_test_split": 1},
    "DataCollator": {"mlm": False},
}
#: QLoRA adds 4-bit NF4 weights with bfloat16 compute and double quantization.
QLORA_QUANTIZATION: dict[str, Any] = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_use_double_quant": True,
}


class TrainingConfigError(ValueError):
    """A training_config.yaml KAITO's tuning would refuse; the message names the key and the fix."""


@dataclass
class TrainingConfig:
    method: str
    model: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    collator: dict[str, Any] = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        return bool(self.quantization.get("load_in_4bit") or self.quantization.get("load_in_8bit"))


def defaults(method: str) -> dict[str, Any]:
    """The sections a Workspace without a config ConfigMap gets for ``method``."""
    if method not in METHODS:
        raise TrainingConfigError(f"Unsupported tuning method {method}; use one of {', '.join(METHODS)}")
    sections = copy.deepcopy(LORA_DEFAULTS)
    if method == "qlora":
        sections["QuantizationConfig"] = dict(QLORA_QUANTIZATION)
    return sections


def parse(text: str | None, method: str) -> TrainingConfig:
    """``training_config.yaml`` text (None: the defaults) -> a checked :class:`TrainingConfig`.

    The user's sections are laid over the method's defaults key by key, as KAITO does."""
    sections = defaults(method)
    if text:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TrainingConfigError(f"training_config.yaml is not YAML: {exc}") from None
        if not isinstance(document, Mapping) or not isinstance(document.get("training_config"), Mapping):
            raise TrainingConfigError("training_config.yaml must hold a mapping under training_config:")
        for name, values in document["training_config"].items():
            if name not in SECTIONS:
                raise TrainingConfigError(
                    f"training_config.{name}: unknown section; use {', '.join(SECTIONS)}"
                )
            if values is None:
                continue
            if not isinstance(values, Mapping):
                raise TrainingConfigError(f"training_config.{name} must be a mapping of keys to values")
            sections.setdefault(name, {}).update(values)
    return check(sections, method)


def check(sections: Mapping[str, Mapping[str, Any]], method: str) -> TrainingConfig:
    allowed = {
        "ModelConfig": MODEL_KEYS,
        "QuantizationConfig": quantization_keys(),
        "LoraConfig": lora_keys(),
        "TrainingArguments": training_keys(),
        "DatasetConfig": DATASET_KEYS,
        "DataCollator": COLLATOR_KEYS,
    }
    for name, values in sections.items():
        unknown = sorted(set(values) - allowed[name])
        if unknown:
            raise TrainingConfigError(
                f"training_config.{name}.{unknown[0]}: unknown key; {name} takes "
                f"{', '.join(sorted(allowed[name]))}"
            )
    config = TrainingConfig(
        method=method,
        model=dict(sections.get("ModelConfig") or {}),
        quantization=dict(sections.get("QuantizationConfig") or {}),
        lora=dict(sections.get("LoraConfig") or {}),
        training=dict(sections.get("TrainingArguments") or {}),
        dataset=dict(sections.get("DatasetConfig") or {}),
        collator=dict(sections.get("DataCollator") or {}),
    )
    # KAITO: lora may not quantize the base model, qlora must.
    if method == "lora" and config.quantized:
        raise TrainingConfigError(
            "training_config.QuantizationConfig: method lora does not quantize the base model; "
            "remove load_in_4bit/load_in_8bit or use method qlora"
        )
    if method == "qlora" and not config.quantized:
        raise TrainingConfigError(
            "training_config.QuantizationConfig: method qlora needs load_in_4bit or load_in_8bit: true"
        )
    split = config.dataset.get("train_test_split", 1)
    if not isinstance(split, int | float) or not 0 < float(split) <= 1:
        raise TrainingConfigError(
            f"training_config.DatasetConfig.train_test_split: {split!r} must be a number in (0, 1]"
        )
    return config


def lora_keys() -> frozenset[str]:
    from peft import LoraConfig

    return frozenset(f.name for f in dataclasses.fields(LoraConfig) if f.init)


def training_keys() -> frozenset[str]:
    from trl import SFTConfig

    return frozenset(f.name for f in dataclasses.fields(SFTConfig) if f.init)


def quantization_keys() -> frozenset[str]:
    from transformers import BitsAndBytesConfig

    params = inspect.signature(BitsAndBytesConfig.__init__).parameters
    return frozenset(p for p, v in params.items() if p != "self" and v.kind is not v.VAR_KEYWORD)
