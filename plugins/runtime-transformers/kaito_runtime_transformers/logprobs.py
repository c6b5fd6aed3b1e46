"""Log-probabilities as OpenAI reports them: each token's text and raw bytes, its log-probability in the
model's own distribution (a log-softmax of the logits before penalties, temperature and filters), and the
most likely tokens at its position.

A token's bytes come from the tokenizer's own vocabulary entry, not from decoding it: a byte-level BPE
token (GPT-2, Llama 3, Qwen) or a byte-fallback token (``<0xE2>``, SentencePiece) may hold part of a
UTF-8 character, which text cannot carry. Its text is those bytes decoded, U+FFFD where incomplete.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kaito_core.plugins import TokenLogprob

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-character table, reversed: the characters byte-level BPE writes bytes as."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _decoder_types(tokenizer: Any) -> set[str]:
    """The kinds of decoder a fast tokenizer chains (``ByteLevel``, ``Metaspace``, ``Replace``...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    found: set[str] = set()

    def walk(spec: Any) -> None:
        if isinstance(spec, dict):
            found.add(str(spec.get("type")))
            for inner in spec.get("decoders") or []:
                walk(inner)

    walk(json.loads(backend.to_str()).get("decoder"))
    return found


class TokenTexts:
    """Token id -> (text, bytes), learned from the tokenizer once and cached per token."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        kinds = _decoder_types(tokenizer)
        self._byte_level = _byte_level_alphabet() if "ByteLevel" in kinds else None
        self._special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
        self._special |= {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
        self._cache: dict[int, tuple[str, tuple[int, ...]]] = {}

    def __call__(self, token: int) -> tuple[str, tuple[int, ...]]:
        cached = self._cache.get(token)
        if cached is None:
            raw = self._raw(token)
            cached = self._cache[token] = (raw.decode("utf-8", "replace"), tuple(raw))
        return cached

    def _raw(self, token: int) -> bytes:
        piece = str(self._tokenizer.convert_ids_to_tokens(token))
        if token in self._special:  # <eos>, <|im_end|>: reported as their text
            return piece.encode()
        if (fallback := _BYTE_FALLBACK.fullmatch(piece)) is not None:
            return bytes([int(fallback.group(1), 16)])
        if self._byte_level is not None and all(c in self._byte_level for c in piece):
            return bytes(self._byte_level[c] for c in piece)
        if "\u2581" in piece:  # SentencePiece writes a space as U+2581
            return piece.replace("\u2581", " ").encode()
        return str(self._tokenizer.decode([token], clean_up_tokenization_spaces=False)).encode()


def token_logprob(torch: Any, texts: TokenTexts, logprobs: Any, token: int, top: int) -> TokenLogprob:
    """The chosen ``token``'s entry from a row of log-probabilities, with the ``top`` most likely (ties
    by token id, so the first is the token an argmax picks)."""
    best: list[tuple[float, int]] = []
    if top > 0:
        values, ids = torch.topk(logprobs, min(top, logprobs.numel()))
        best = sorted(zip(values.tolist(), ids.tolist(), strict=True), key=lambda pair: (-pair[0], pair[1]))
    alternatives = tuple(_entry(texts, int(t), float(v)) for v, t in best)
    return _entry(texts, token, float(logprobs[token]), alternatives)


def _entry(texts: TokenTexts, token: int, logprob: float, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
    text, raw = texts(token)
    return TokenLogprob(text, logprob, raw, top)
