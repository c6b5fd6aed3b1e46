"""A llama.cpp vocabulary: text to tokens, tokens to bytes, and which tokens end a generation."""

from __future__ import annotations

import ctypes
from typing import Any


class Vocab:
    def __init__(self, L: Any, vocab: Any) -> None:
        self._L = L
        self._vocab = vocab
        self.size = L.llama_vocab_n_tokens(vocab)
        self._add_bos = bool(L.llama_vocab_get_add_bos(vocab))
        self._pieces: dict[int, bytes] = {}
        self._shown: dict[int, bytes] = {}
        self._eog: list[int] | None = None
        bos, eos = L.llama_vocab_bos(vocab), L.llama_vocab_eos(vocab)
        self.bos_text = self.piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else ""
        self.eos_text = self.piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else ""

    @property
    def handle(self) -> Any:
        """The llama_vocab pointer (for samplers that need it: grammars)."""
        return self._vocab

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text`; special tokens in it are parsed (chat templates write them as text), and BOS
        is added when the model wants one and the text does not already start with it."""
        L = self._L
        data = text.encode("utf-8")
        add_bos = self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        size = len(data) + 2
        buf = (L.llama_token * size)()
        n = L.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, True)
        if n < 0:
            size = -n
            buf = (L.llama_token * size)()
            n = L.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, True)
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for (special tokens as text only when asked)."""
        cached = self._pieces.get(token) if not special else None
        if cached is not None:
            return cached
        L = self._L
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        piece = buf.raw[:n]
        if not special:
            self._pieces[token] = piece
        return piece

    def shown(self, token: int) -> bytes:
        """The bytes a token is reported as (log-probabilities): its piece, special tokens' text too
        (``<end_of_turn>`` rather than nothing)."""
        cached = self._shown.get(token)
        if cached is None:
            cached = self._shown[token] = self.piece(token, special=True)
        return cached

    def is_eog(self, token: int) -> bool:
        return bool(self._L.llama_vocab_is_eog(self._vocab, token))

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token, for masking (min_tokens, ignore_eos): found by asking about each
        token of the vocabulary, so only on the first request that needs it."""
        if self._eog is None:
            self._eog = [t for t in range(self.size) if self.is_eog(t)]
        return self._eog
