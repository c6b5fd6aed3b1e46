"""Log-probabilities from the real Gemma 3 270M over real HTTP, read with the official openai client:
chat (``logprobs``/``top_logprobs``) and completions (legacy ``logprobs: N``), streamed and whole,
checked against llama-cpp-python's own logits for the same prompt, and bad values refused by name."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

MODEL_NAME = "gemma-3-270m"  # what conftest serves
QUESTION = [{"role": "user", "content": "Name three colours."}]
PROMPT = "The capital of France is"


def _client(served: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", timeout=120)


def _check_entry(entry: Any, top: int, greedy: bool) -> None:
    """One ChatCompletionTokenLogprob: a log-probability, its bytes, and ``top`` sorted alternatives
    that are a part of one distribution."""
    assert entry.logprob <= 0.0
    assert len(entry.top_logprobs) == top
    values = [alt.logprob for alt in entry.top_logprobs]
    assert values == sorted(values, reverse=True) and all(v <= 0.0 for v in values)
    assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
    assert entry.bytes is not None and bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    for alt in entry.top_logprobs:
        assert alt.bytes is not None and bytes(alt.bytes).decode("utf-8", "replace") == alt.token
    if top and greedy:  # the greedy choice is the most likely token, with the same number
        assert entry.token == entry.top_logprobs[0].token
        assert entry.logprob == entry.top_logprobs[0].logprob
    if top:  # never above the most likely one
        assert entry.logprob <= entry.top_logprobs[0].logprob


def _content(completion: Any) -> list[Any]:
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    return list(logprobs.content)


def _text_of(entries: list[Any]) -> str:
    return b"".join(bytes(e.bytes) for e in entries).decode("utf-8", "replace")


def test_chat_logprobs_whole_and_streamed_agree(gemma_server: Any) -> None:
    client = _client(gemma_server)
    ask: dict[str, Any] = {"model": MODEL_NAME, "messages": QUESTION, "temperature": 0, "max_tokens": 24,
                           "logprobs": True, "top_logprobs": 5}  # fmt: skip
    whole = client.chat.completions.create(**ask)
    choice = whole.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert whole.usage is not None and len(entries) == whole.usage.completion_tokens  # every token, once
    for entry in entries:
        _check_entry(entry, 5, greedy=True)
    assert choice.message.content and _text_of(entries).startswith(choice.message.content)

    streamed: list[Any] = []
    text = ""
    for chunk in client.chat.completions.create(**ask, stream=True):
        for c in chunk.choices:
            text += c.delta.content or ""
            if c.logprobs is not None and c.logprobs.content:
                streamed.extend(c.logprobs.content)
    assert text == choice.message.content
    assert [e.token for e in streamed] == [e.token for e in entries]
    for one, other in zip(streamed, entries, strict=True):
        assert one.logprob == pytest.approx(other.logprob, abs=1e-3)
        assert [a.token for a in one.top_logprobs] == [a.token for a in other.top_logprobs]


def test_chat_logprobs_without_alternatives_and_absent_unless_asked(gemma_server: Any) -> None:
    client = _client(gemma_server)
    ask: dict[str, Any] = {"model": MODEL_NAME, "messages": QUESTION, "temperature": 0, "max_tokens": 4}
    plain = client.chat.completions.create(**ask)
    assert plain.choices[0].logprobs is None
    bare = client.chat.completions.create(**ask, logprobs=True)
    content = bare.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 4
    for entry in content:
        _check_entry(entry, 0, greedy=True)


def test_logprobs_are_the_models_distribution_before_temperature(gemma_server: Any) -> None:
    """The first token's distribution does not depend on how it is then sampled."""
    client = _client(gemma_server)
    ask: dict[str, Any] = {"model": MODEL_NAME, "messages": QUESTION, "max_tokens": 1, "logprobs": True,
                           "top_logprobs": 4}  # fmt: skip
    greedy = _content(client.chat.completions.create(**ask, temperature=0))[0]
    hot = _content(client.chat.completions.create(**ask, temperature=1.5, seed=7, extra_body={"top_k": 3}))[0]
    assert [a.token for a in hot.top_logprobs] == [a.token for a in greedy.top_logprobs]
    for one, other in zip(hot.top_logprobs, greedy.top_logprobs, strict=True):
        assert one.logprob == pytest.approx(other.logprob, abs=1e-3)
    chosen = {a.token: a.logprob for a in hot.top_logprobs}  # top_k 3: the draw is among the top 3
    assert hot.token in chosen and hot.logprob == pytest.approx(chosen[hot.token], abs=1e-6)


def test_a_stop_string_keeps_every_token_once(gemma_server: Any) -> None:
    client = _client(gemma_server)
    ask: dict[str, Any] = {"model": MODEL_NAME, "messages": QUESTION, "temperature": 0, "max_tokens": 24,
                           "logprobs": True, "top_logprobs": 1}  # fmt: skip
    free = client.chat.completions.create(**ask).choices[0]
    assert free.message.content and len(free.message.content) > 6
    stop = free.message.content[4:7]  # held back while it could be a stop string, then cut
    cut = client.chat.completions.create(**ask, stop=[stop])
    choice = cut.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content == free.message.content[:4]
    entries = choice.logprobs.content  # type: ignore[union-attr]
    assert cut.usage is not None and entries is not None and len(entries) == cut.usage.completion_tokens
    # the tokens up to the one that completed the stop string, in order, as the free run had them
    assert [e.token for e in entries] == [e.token for e in free.logprobs.content[: len(entries)]]  # type: ignore[union-attr]
    assert stop in _text_of(entries) and _text_of(entries).startswith(choice.message.content)
    streamed = []
    for chunk in client.chat.completions.create(**ask, stop=[stop], stream=True):
        for c in chunk.choices:
            streamed.extend(c.logprobs.content or [] if c.logprobs else [])
    assert [e.token for e in streamed] == [e.token for e in entries]


def test_completions_legacy_logprobs(gemma_server: Any) -> None:
    client = _client(gemma_server)
    ask: dict[str, Any] = {"model": MODEL_NAME, "prompt": PROMPT, "temperature": 0, "max_tokens": 8,
                           "logprobs": 3}  # fmt: skip
    whole = client.completions.create(**ask)
    lp = whole.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    assert whole.usage is not None and len(lp.tokens) == whole.usage.completion_tokens
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(lp.tokens)
    offset = 0
    rows = zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset, strict=True)
    for token, logprob, top, at in rows:
        assert at == offset
        offset += len(token)
        assert logprob <= 0.0 and len(top) <= 4 and top[token] == logprob  # the chosen one is always there
        values = list(top.values())
        assert values == sorted(values, reverse=True) and max(values) == logprob  # greedy
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
    assert "".join(lp.tokens).startswith(whole.choices[0].text)

    tokens, logprobs, offsets = [], [], []
    for chunk in client.completions.create(**ask, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None:
                tokens += c.logprobs.tokens or []
                logprobs += c.logprobs.token_logprobs or []
                offsets += c.logprobs.text_offset or []
    assert tokens == lp.tokens and offsets == lp.text_offset
    assert logprobs == pytest.approx(lp.token_logprobs, abs=1e-3)


def _direct_log_softmax(path: Path, text: str) -> tuple[np.ndarray, Any, Any]:
    """The next-token log-probabilities after ``text``, from llama-cpp-python's own calls: one context,
    one decode, the logits of the last position (the project's engine code is not involved)."""
    import llama_cpp.llama_cpp as L

    params = L.llama_model_default_params()
    params.use_extra_bufts = False  # as the engine loads it: repacked AMX layouts crash some sandboxes
    model = L.llama_model_load_from_file(str(path).encode(), params)
    cparams = L.llama_context_default_params()
    cparams.n_ctx, cparams.n_threads, cparams.n_threads_batch = 64, 2, 2
    ctx = L.llama_init_from_model(model, cparams)
    batch = L.llama_batch_init(64, 0, 1)
    try:
        vocab = L.llama_model_get_vocab(model)
        data = text.encode()
        buf = (L.llama_token * 64)()
        n = L.llama_tokenize(vocab, data, len(data), buf, 64, True, True)
        for i in range(n):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = buf[i], i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, i == n - 1
        batch.n_tokens = n
        assert L.llama_decode(ctx, batch) == 0
        size = L.llama_vocab_n_tokens(vocab)
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, n - 1), shape=(size,)).astype(np.float64)
        logp = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        piece = ctypes_piece(L, vocab)
        best = [int(t) for t in np.argsort(-logp, kind="stable")[:5]]
        return logp, best, [piece(t) for t in best]
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        L.llama_model_free(model)


def ctypes_piece(L: Any, vocab: Any) -> Any:
    import ctypes

    def piece(token: int) -> str:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(vocab, token, buf, 256, 0, True)
        return buf.raw[:n].decode("utf-8", "replace")

    return piece


def test_agrees_with_llama_cpp_python_on_the_same_prompt(lone_server: Any, gemma_path: Path) -> None:
    """The first token's numbers are llama.cpp's own logits, log-softmaxed over the whole vocabulary."""
    ask = {"model": MODEL_NAME, "prompt": PROMPT, "temperature": 0, "max_tokens": 1, "logprobs": 5}
    served = _client(lone_server).completions.create(**ask).choices[0].logprobs
    assert served is not None and served.tokens and served.token_logprobs and served.top_logprobs
    logp, best, texts = _direct_log_softmax(gemma_path, PROMPT)
    assert served.tokens[0] == texts[0]
    assert served.token_logprobs[0] == pytest.approx(logp[best[0]], abs=1e-3)
    top = served.top_logprobs[0]
    assert list(top)[:3] == texts[:3]  # lower ranks may swap where values nearly tie
    for text, token in zip(texts, best, strict=True):
        if text in top:
            assert top[text] == pytest.approx(logp[token], abs=1e-3)


@pytest.mark.parametrize(
    ("route", "extra", "field", "status"),
    [
        ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs", 400),
        ("chat", {"logprobs": True, "top_logprobs": -1}, "top_logprobs", 400),
        ("chat", {"logprobs": True, "top_logprobs": "x"}, "top_logprobs", 422),
        ("chat", {"top_logprobs": 2}, "top_logprobs", 400),
        ("chat", {"logprobs": False, "top_logprobs": 2}, "top_logprobs", 400),
        ("chat", {"logprobs": "yes"}, "logprobs", 422),
        ("completions", {"logprobs": 21}, "logprobs", 400),
        ("completions", {"logprobs": True}, "logprobs", 422),
        ("completions", {"logprobs": 2, "echo": True}, "echo", 400),
    ],
)
def test_bad_values_are_refused_by_name(
    gemma_server: Any, route: str, extra: dict[str, Any], field: str, status: int
) -> None:
    if route == "chat":
        url, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}
    else:
        url, body = "/v1/completions", {"prompt": "Hi"}
    body = {"model": MODEL_NAME, "max_tokens": 2, **body, **extra}
    response = httpx.post(gemma_server.url + url, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"], response.text


def test_a_token_holding_part_of_a_character_keeps_its_raw_byte(gemma_server: Any) -> None:
    """Gemma's byte tokens (``<0xF0>``...) stand for one byte of a longer character: the entry's text is
    U+FFFD, its bytes the byte itself, so joining the bytes rebuilds the character."""
    from kaito_runtime_llamacpp import sampling

    loaded = gemma_server.engine._loaded
    assert loaded is not None
    vocab = loaded.vocab
    emoji = "\U0001f600".encode()  # four bytes, none a character alone
    by_byte = {vocab.shown(t): t for t in range(vocab.size) if len(vocab.shown(t)) == 1}
    tokens = [by_byte[bytes([b])] for b in emoji]
    logp = np.full(vocab.size, -30.0)
    logp[tokens] = np.log(0.25)
    entries = [sampling.token_logprob(vocab, logp, t, 2) for t in tokens]
    assert all(e.token == "\ufffd" and len(e.bytes) == 1 for e in entries)
    assert b"".join(bytes(e.bytes) for e in entries).decode() == "\U0001f600"
    assert all(len(e.top) == 2 and e.top[0].logprob == pytest.approx(np.log(0.25)) for e in entries)
