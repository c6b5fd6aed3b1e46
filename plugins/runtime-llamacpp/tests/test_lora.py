"""PEFT LoRA adapters on llama.cpp: converted to GGUF (lora_gguf.py), applied at their strength.

The proof of the conversion: llama.cpp's logits with the converted adapter equal transformers + peft's
with the same adapter, at strength 1 and 0.5, and the base model's at 0 (the q/k permutation included:
without it they do not match). Then the real Gemma 3 GGUF with an adapter made for its shapes, and
the refusals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kaito_runtime_llamacpp import lora_gguf
from kaito_runtime_llamacpp.engine import LlamaCppEngine
from kaito_runtime_llamacpp.loading import EngineError, Loaded, apply_adapters, free, load
from kaito_runtime_llamacpp.lora_gguf import BaseModelInfo, LoraConversionError, convert, converted

from kaito_core.plugins import EngineConfig, SamplingParams

from .conftest import TinyLlama

TOKENS = [10, 50, 120, 7, 200, 33, 90, 5, 61, 150]


def llama_logits(loaded: Loaded, tokens: list[int]) -> np.ndarray:
    """Every position's logits for ``tokens`` as sequence 0, from a clean KV cache."""
    import llama_cpp.llama_cpp as L

    L.llama_memory_clear(loaded.mem, True)
    batch = loaded.batch
    for i, token in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, True
        batch.seq_id[i][0] = 0
    batch.n_tokens = len(tokens)
    assert L.llama_decode(loaded.ctx, batch) == 0
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(loaded.model))
    rows = [L.llama_get_logits_ith(loaded.ctx, i) for i in range(len(tokens))]
    return np.array([np.ctypeslib.as_array(row, shape=(n_vocab,)) for row in rows])


def peft_logits(tiny: TinyLlama, adapter: Path | None, strength: float, tokens: list[int]) -> np.ndarray:
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(tiny.hf_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.set_scale("default", strength)
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def _load(tiny: TinyLlama, adapters: dict[str, str], **options: Any) -> Loaded:
    config = EngineConfig(model_path=str(tiny.gguf), served_model_name="tiny", context_length=64, threads=2,
                          max_batch=1, adapters=adapters, options=options)  # fmt: skip
    return load(config, max_batch=1, threads=2)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    # f32 on both sides; llama.cpp sums in another order (and attends with flash attention): its logits
    # are within ~2e-4 of transformers' for this model
    return bool(np.allclose(a, b, rtol=0, atol=1e-3))


def _error(got: np.ndarray, want: np.ndarray, base: np.ndarray) -> float:
    """How far llama.cpp's logits are from peft's, as a share of how far the adapter moves them.

    Not an absolute tolerance: this random model has ill-conditioned positions (there transformers' own
    f32 and f64 answers differ 100x more than elsewhere), where llama.cpp's 2e-4 grows to 2e-2 once
    the adapter's activations pass through; a wrong conversion is off by the size of the effect itself.
    """
    return float(np.abs(got - want).max() / np.abs(want - base).max())


def test_converted_lora_matches_peft_at_each_strength(tiny_llama: TinyLlama, tmp_path: Path) -> None:
    loaded = _load(tiny_llama, {"tuned": str(tiny_llama.adapter)}, adapter_cache=str(tmp_path))
    try:
        import llama_cpp.llama_cpp as L

        base = peft_logits(tiny_llama, None, 0.0, TOKENS)
        apply_adapters(L, loaded, ())
        assert _close(llama_logits(loaded, TOKENS), base)  # the tiny GGUF itself is right
        for strength in (1.0, 0.5):
            want = peft_logits(tiny_llama, tiny_llama.adapter, strength, TOKENS)
            assert np.abs(want - base).max() > 0.2  # the adapter changes the model plainly
            apply_adapters(L, loaded, ((0, strength),))
            got = llama_logits(loaded, TOKENS)
            assert _error(got, want, base) < 0.04, f"strength {strength}: {np.abs(got - want).max(axis=1)}"
            assert np.median(np.abs(got - want)) < 1e-4  # and almost everywhere as close as the base
        apply_adapters(L, loaded, ((0, 0.0),))
        assert _close(llama_logits(loaded, TOKENS), base)
    finally:
        free(loaded)
    assert [p.suffix for p in tmp_path.iterdir()] == [".gguf"]  # converted once, into the cache


def test_without_the_qk_permutation_the_logits_differ(
    tiny_llama: TinyLlama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The negative control: converted as if llama did not permute q/k, the adapter is wrong."""
    monkeypatch.setitem(lora_gguf.SUPPORTED, "llama", False)
    wrong = convert(tiny_llama.adapter, BaseModelInfo.read(tiny_llama.gguf), tmp_path / "wrong.gguf")
    loaded = _load(tiny_llama, {"tuned": str(wrong)})
    try:
        import llama_cpp.llama_cpp as L

        apply_adapters(L, loaded, ((0, 1.0),))
        got = llama_logits(loaded, TOKENS)
    finally:
        free(loaded)
    want, base = (
        peft_logits(tiny_llama, tiny_llama.adapter, 1.0, TOKENS),
        peft_logits(tiny_llama, None, 0, TOKENS),
    )
    assert _error(got, want, base) > 0.3


def test_strength_option_and_conversion_cache(tiny_llama: TinyLlama, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    loaded = _load(tiny_llama, {"tuned": str(tiny_llama.adapter)}, adapter_cache=str(cache),
                   **{"strength.tuned": "0.25"})  # fmt: skip
    free(loaded)
    assert loaded.adapter_names == ["tuned"] and loaded.strengths == [0.25]
    first = next(cache.iterdir())
    stamp = first.stat().st_mtime_ns
    free(_load(tiny_llama, {"tuned": str(tiny_llama.adapter)}, adapter_cache=str(cache)))
    assert list(cache.iterdir()) == [first] and first.stat().st_mtime_ns == stamp  # not redone
    with pytest.raises(EngineError, match=r"strength 1\.5 is not in"):  # refused before loading
        LlamaCppEngine(EngineConfig(model_path=str(tiny_llama.gguf), served_model_name="tiny",
                                    adapters={"tuned": str(tiny_llama.adapter)},
                                    options={"strength.tuned": "1.5"}))  # fmt: skip


def test_rslora_and_alpha_pattern_fold_into_the_scale(tiny_llama: TinyLlama, tmp_path: Path) -> None:
    """PEFT scales that llama.cpp's alpha/r cannot say per module are folded into lora_b: exact."""
    from kaito_testing.tiny_llama import make_adapter

    adapter = make_adapter(tiny_llama.hf_dir, tmp_path / "rs", seed=2, use_rslora=True,
                           alpha_pattern={"v_proj": 2}, rank_pattern={"down_proj": 2})  # fmt: skip
    loaded = _load(tiny_llama, {"rs": str(adapter)}, adapter_cache=str(tmp_path / "cache"))
    try:
        import llama_cpp.llama_cpp as L

        apply_adapters(L, loaded, ((0, 1.0),))
        got = llama_logits(loaded, TOKENS)
    finally:
        free(loaded)
    want, base = peft_logits(tiny_llama, adapter, 1.0, TOKENS), peft_logits(tiny_llama, None, 0, TOKENS)
    assert _error(got, want, base) < 0.04


# -- the real Gemma 3 270M GGUF ----------------------------------------------------------------------


def gemma_adapter(
    gemma_path: Path, out: Path, modules: tuple[str, ...] = ("q_proj", "v_proj"), text: str = "model.layers"
) -> Path:
    """A PEFT adapter for the Gemma GGUF's shapes (random, fixed seed): what peft saves for Gemma 3."""
    from safetensors.numpy import save_file

    base = BaseModelInfo.read(gemma_path)
    gguf_names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "lm_head": ""}
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(base.n_blocks):
        for module in modules:
            if module == "lm_head":
                continue
            n_in, n_out = base.shapes[f"blk.{layer}.{gguf_names[module]}.weight"]
            prefix = f"base_model.model.{text}.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, 0.05, (4, n_in)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, 0.05, (n_out, 4)).astype(np.float32)
    if "lm_head" in modules:
        tensors["base_model.model.lm_head.lora_A.weight"] = np.zeros((4, 640), np.float32)
        tensors["base_model.model.lm_head.lora_B.weight"] = np.zeros((262144, 4), np.float32)
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 16, "target_modules": list(modules), "bias": "none",
              "task_type": "CAUSAL_LM", "base_model_name_or_path": "google/gemma-3-270m"}  # fmt: skip
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


async def _greedy(engine: LlamaCppEngine, prompt: str, adapter: str | None) -> str:
    params = SamplingParams(max_tokens=12, greedy=True, ignore_eos=True, adapter=adapter)
    return "".join([chunk.text async for chunk in engine.stream(prompt, params)])


def test_gemma3_adapter_converts_and_changes_answers(gemma_path: Path, tmp_path: Path) -> None:
    import asyncio

    adapter = gemma_adapter(gemma_path, tmp_path / "gemma-lora")
    engine = LlamaCppEngine(EngineConfig(model_path=str(gemma_path), served_model_name="gemma", threads=2,
                                         context_length=256, max_batch=2, adapters={"tuned": str(adapter)},
                                         options={"adapter_cache": str(tmp_path / "cache")}))  # fmt: skip

    async def run() -> tuple[str, str, str]:
        await engine.load()
        try:
            prompt = "The capital of France is"
            return (await _greedy(engine, prompt, ""), await _greedy(engine, prompt, "tuned"),
                    await _greedy(engine, prompt, ""))  # fmt: skip
        finally:
            await engine.close()

    base, tuned, base_again = asyncio.run(run())
    assert tuned != base and base_again == base


def test_the_converted_file_says_what_llama_cpp_reads(gemma_path: Path, tmp_path: Path) -> None:
    from gguf import GGUFReader

    # the text model of a multimodal Gemma 3 checkpoint maps like the text-only one
    adapter = gemma_adapter(gemma_path, tmp_path / "mm", text="model.language_model.layers")
    out = convert(adapter, BaseModelInfo.read(gemma_path), tmp_path / "mm.gguf")
    reader = GGUFReader(str(out))

    def field(key: str) -> object:
        f = reader.fields[key]
        part = f.parts[f.data[0]]
        return bytes(part).decode() if f.types[0].name == "STRING" else part.tolist()[0]

    assert field("general.type") == "adapter" and field("adapter.type") == "lora"
    assert field("general.architecture") == "gemma3" and field("adapter.lora.alpha") == 16.0
    tensors = {t.name: (tuple(int(d) for d in t.shape), t.tensor_type.name) for t in reader.tensors}
    assert len(tensors) == 18 * 2 * 2
    assert tensors["blk.0.attn_q.weight.lora_a"] == ((640, 4), "F32")  # ggml ne: [in, r]
    assert tensors["blk.0.attn_q.weight.lora_b"] == ((4, 1024), "F32")  # [r, out]
    assert tensors["blk.17.attn_v.weight.lora_b"] == ((4, 256), "F32")


def test_refusals_name_the_reason(gemma_path: Path, tiny_llama: TinyLlama, tmp_path: Path) -> None:
    gemma = BaseModelInfo.read(gemma_path)
    assert (gemma.arch, gemma.n_blocks, gemma.n_head, gemma.n_head_kv) == ("gemma3", 18, 4, 1)
    tied = gemma_adapter(gemma_path, tmp_path / "lm-head", modules=("q_proj", "lm_head"))
    with pytest.raises(LoraConversionError, match=r"lm_head.*tied embeddings"):
        convert(tied, gemma, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("x.gguf*"))  # nothing half-written is left
    # an adapter for another model: shapes checked by name before llama.cpp sees them
    with pytest.raises(LoraConversionError, match="another model"):
        convert(tiny_llama.adapter, gemma, tmp_path / "y.gguf")
    phi = BaseModelInfo("phi3", 2, 4, 4, {})
    with pytest.raises(LoraConversionError, match=r"architecture 'phi3'.*supported: gemma, gemma2, gemma3"):
        convert(tiny_llama.adapter, phi, tmp_path / "z.gguf")
    for key, value, message in [
        ("use_dora", True, "DoRA"),
        ("modules_to_save", ["lm_head"], "modules_to_save"),
        ("bias", "all", "bias 'all'"),
        ("peft_type", "IA3", "only LoRA"),
    ]:
        broken = tmp_path / key
        broken.mkdir()
        weights = (tiny_llama.adapter / "adapter_model.safetensors").read_bytes()
        (broken / "adapter_model.safetensors").write_bytes(weights)
        config = json.loads((tiny_llama.adapter / "adapter_config.json").read_text())
        (broken / "adapter_config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(LoraConversionError, match=message):
            converted(broken, tiny_llama.gguf, str(tmp_path / "cache"))
    # the engine says which adapter failed, with the converter's reason
    engine = LlamaCppEngine(EngineConfig(model_path=str(tiny_llama.gguf), served_model_name="tiny",
                                         adapters={"dora": str(tmp_path / "use_dora")},
                                         options={"adapter_cache": str(tmp_path / "cache")}))  # fmt: skip
    with pytest.raises(EngineError, match="adapter dora: use_dora"):
        import asyncio

        asyncio.run(engine.load())


def test_bf16_adapter_weights_read_without_torch(tmp_path: Path) -> None:
    import struct

    values = np.array([[1.0, -2.5, 0.15625]], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact: these fit bf16's bits
    header = json.dumps({"x": {"dtype": "BF16", "shape": [1, 3], "data_offsets": [0, len(bf16)]}}).encode()
    (tmp_path / "a.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bf16)
    assert np.array_equal(lora_gguf.read_safetensors(tmp_path / "a.safetensors")["x"], values)
