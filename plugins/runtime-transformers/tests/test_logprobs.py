"""Log-probabilities of the transformers engine on the tiny model: each token's numbers are the
log-softmax of a plain forward pass over the prompt and the tokens generated so far."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kaito_runtime_transformers.engine import TransformersEngine
from kaito_runtime_transformers.logprobs import TokenTexts

from kaito_core.plugins import Chunk, EngineConfig, SamplingParams

PROMPT = "<|user|>what colour is the sky</s><|assistant|>"


def _generate(model: Path, params: SamplingParams) -> list[Chunk]:
    async def run() -> list[Chunk]:
        engine = TransformersEngine(EngineConfig(str(model), "tiny"))
        await engine.load()
        try:
            return [c async for c in engine.stream(PROMPT, params)]
        finally:
            await engine.close()

    return asyncio.run(run())


@pytest.mark.parametrize("greedy", [True, False])
def test_logprobs_match_a_direct_forward_pass(tiny_model: Path, greedy: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    params = SamplingParams(max_tokens=8, greedy=greedy, temperature=0.7, seed=5, logprobs=4, ignore_eos=True)
    chunks = _generate(tiny_model, params)
    entries = [e for c in chunks for e in c.logprobs]
    assert sum(c.tokens for c in chunks) == len(entries) == 8  # one per token, counted once

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    prompt = tokenizer(PROMPT, add_special_tokens=True)["input_ids"]
    texts = TokenTexts(tokenizer)
    vocab = {texts(t)[1]: t for t in range(len(tokenizer))}
    assert len(vocab) == len(tokenizer)  # the byte strings of this vocabulary are unique
    generated = [vocab[e.bytes] for e in entries]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + generated])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)[len(prompt) - 1 : -1]  # row i predicts generated[i]
    for row, entry, token in zip(logp, entries, generated, strict=True):
        assert entry.logprob == pytest.approx(float(row[token]), abs=1e-4)
        best = torch.topk(row, 4)
        assert [a.bytes for a in entry.top] == [texts(int(t))[1] for t in best.indices]
        assert [a.logprob for a in entry.top] == pytest.approx(best.values.tolist(), abs=1e-4)
        assert sum(2.718281828459045**a.logprob for a in entry.top) <= 1.0 + 1e-6
        if greedy:
            assert entry.bytes == entry.top[0].bytes and entry.logprob == entry.top[0].logprob
    text = "".join(c.text for c in chunks)
    assert b"".join(bytes(e.bytes) for e in entries).decode("utf-8", "replace") == text


def test_no_logprobs_unless_asked_and_the_same_answer_when_asked(tiny_model: Path) -> None:
    plain = _generate(tiny_model, SamplingParams(max_tokens=4, greedy=True))
    assert all(not c.logprobs for c in plain)
    asked = _generate(tiny_model, SamplingParams(max_tokens=4, greedy=True, logprobs=0))
    assert [c.text for c in asked] == [c.text for c in plain]
    assert [len(c.logprobs) for c in asked] == [c.tokens for c in asked]
    assert all(e.top == () and e.logprob <= 0 for c in asked for e in c.logprobs)


def test_token_bytes_are_the_vocabularys_own(tiny_model: Path) -> None:
    """Every ordinary token's bytes decode to what the tokenizer decodes it to; single-byte tokens that
    are half a character keep their raw byte (text alone would have lost it)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    texts = TokenTexts(tokenizer)
    special = set(tokenizer.all_special_ids)
    partial = 0
    for token in range(len(tokenizer)):
        text, raw = texts(token)
        if token in special:
            assert text == tokenizer.convert_ids_to_tokens(token)
            continue
        assert text == tokenizer.decode([token], clean_up_tokenization_spaces=False)
        assert bytes(raw).decode("utf-8", "replace") == text
        partial += "\ufffd" in text and len(raw) == 1 and raw[0] >= 0x80
    assert partial > 0  # the byte-level alphabet holds the 128 bytes above ASCII as tokens


def test_an_end_of_sequence_token_is_counted_and_reported(tiny_model: Path, tmp_path: Path) -> None:
    """The model made to end on its own first choice (its token named an end of sequence in
    config.json): that token is the one counted, and its logprob is reported with the finish."""
    import json
    import shutil

    from transformers import AutoTokenizer

    params = SamplingParams(max_tokens=4, greedy=True, logprobs=2)
    first = _generate(tiny_model, params)[0].logprobs[0]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    texts = TokenTexts(tokenizer)
    token = next(t for t in range(len(tokenizer)) if texts(t)[1] == first.bytes)
    ending = tmp_path / "ending"
    shutil.copytree(tiny_model, ending)
    config = json.loads((ending / "config.json").read_text())
    config["eos_token_id"] = [tokenizer.eos_token_id, token]
    (ending / "config.json").write_text(json.dumps(config))
    chunks = _generate(ending, params)
    assert [(c.text, c.tokens, c.finish_reason) for c in chunks] == [("", 1, "stop")]
    assert chunks[0].logprobs == (first,)
