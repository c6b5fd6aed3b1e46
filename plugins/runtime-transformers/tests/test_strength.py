"""An adapter's strength, as the transformers engine applies it: 0 is the base model, 1 the adapter
as trained, and 0.5 exactly half of every LoRA layer's contribution (peft's scaling times the
strength), so the model at 0.5 is neither the base nor the full adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaito_runtime_transformers.engine import TransformersEngine

from kaito_core.plugins import EngineConfig

pytestmark = pytest.mark.timeout(300)
PROMPT = "what colour is the sky"


@pytest.fixture(scope="module")
def random_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with random A and B (peft's init_lora_weights=False), so it changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), config)
    out = tmp_path_factory.mktemp("random-adapter")
    model.save_pretrained(out)
    return out


def _engine(model: Path, adapter: Path | None, strength: float) -> TransformersEngine:
    adapters = {"tuned": str(adapter)} if adapter else {}
    options = {"strength.tuned": strength, "device": "cpu"}
    engine = TransformersEngine(EngineConfig(str(model), "tiny", adapters=adapters, options=options))
    engine._load()  # what load() runs in a worker thread
    return engine


def _logits(engine: TransformersEngine) -> object:
    import torch

    ids = engine._tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return engine._model(ids).logits[0, -1]


def _lora_deltas(engine: TransformersEngine) -> list[object]:
    """What each LoRA layer adds to its base layer's output for one fixed input."""
    import torch
    from peft.tuners.lora import LoraLayer

    deltas = []
    for module in engine._model.modules():
        if isinstance(module, LoraLayer):
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(1, 3, module.in_features, generator=generator)
            with torch.no_grad():
                deltas.append(module(x) - module.base_layer(x))
    return deltas


def test_strength_zero_half_and_one(tiny_model: Path, random_adapter: Path) -> None:
    import torch

    base = _logits(_engine(tiny_model, None, 1.0))
    off, half, full = (_engine(tiny_model, random_adapter, s) for s in (0.0, 0.5, 1.0))
    assert torch.allclose(_logits(off), base, atol=1e-6)  # 0: the base model's answers
    assert not torch.allclose(_logits(full), base, atol=1e-3)  # 1: the adapter changes them
    half_deltas, full_deltas = _lora_deltas(half), _lora_deltas(full)
    assert len(half_deltas) == len(full_deltas) == 2 * 3  # 2 layers x q_proj, v_proj, down_proj
    for h, f in zip(half_deltas, full_deltas, strict=True):
        assert f.abs().max() > 1e-4
        assert torch.allclose(h, 0.5 * f, atol=1e-6)  # 0.5: exactly half of each layer's contribution
    middle = _logits(half)
    assert not torch.allclose(middle, base, atol=1e-4)
    assert not torch.allclose(middle, _logits(full), atol=1e-4)
