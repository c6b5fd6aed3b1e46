"""Picking the next token: a llama.cpp sampler chain per sequence, or an argmax for plain greedy.

A chain is built from a request's SamplingParams: end-of-generation tokens masked while ``min_tokens``
are not reached (or for good with ``ignore_eos``), penalties over the last tokens, then greedy or
top-k / typical / top-p / min-p / temperature / a seeded draw; a grammar first for structured output
(``response_format``: JSON Schema to GBNF by llama.cpp's converter). Greedy without penalties skips the
chain: ``llama_sampler_sample`` first copies every logit into a candidate array, while an argmax over
the logits row picks the same token (the first maximum, as the greedy sampler does). Sampling whose
chain starts with top-k (no penalty, no grammar) hands the chain only the tokens that can be in the
top k instead of the whole vocabulary (``top_candidates``): the chain then keeps the same k tokens
and draws from them with the same random state, so the token is the one the full array gives (short
of logits tied exactly at the k-th place, where the order llama.cpp's sort meets them in decides).

Log-probabilities, when a request asks for them, are read from the same row before anything else
touches it (the argmax masks end-of-generation tokens in place): a log-softmax over the vocabulary and
the top N by ``argpartition``, never computed for requests that did not ask.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from kaito_core.plugins import RequestError, SamplingParams, TokenLogprob
from kaito_runtime_llamacpp.tokens import Vocab

#: Tokens the repetition/presence/frequency penalties look back over.
PENALTY_LAST_N = 64


def is_greedy(p: SamplingParams) -> bool:
    return p.greedy or p.temperature <= 0.0


def is_plain_greedy(p: SamplingParams) -> bool:
    """Greedy with no penalty and no grammar: the argmax of the logits is the answer."""
    no_penalties = p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty
    return is_greedy(p) and no_penalties and p.json_schema is None


@functools.lru_cache(maxsize=64)
def grammar_for(json_schema: str) -> str:
    """The GBNF grammar of JSON matching ``json_schema`` (llama.cpp's own converter, as llama-server
    uses); RequestError naming ``response_format`` for a schema it cannot express."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json_schema))
    except Exception as exc:  # the converter raises plain exceptions of several kinds
        message = f"response_format: the JSON schema cannot be turned into a grammar: {exc}"
        raise RequestError(message, param="response_format") from None


def masks_eog(p: SamplingParams, generated: int) -> bool:
    """Whether end-of-generation tokens are forbidden after ``generated`` tokens."""
    return p.ignore_eos or generated < p.min_tokens


def make_sampler(L: Any, vocab: Vocab, p: SamplingParams, generated: Sequence[int]) -> Any:
    """A sampler chain for these params, having seen ``generated`` (a rebuilt chain relearns the
    history its penalties look at). The caller frees it with ``llama_sampler_free``."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if p.json_schema is not None:  # first: every later sampler sees only tokens the grammar allows
        grammar = L.llama_sampler_init_grammar(vocab.handle, grammar_for(p.json_schema).encode(), b"root")
        if not grammar:
            L.llama_sampler_free(chain)
            raise RequestError("response_format: llama.cpp refused the schema's grammar", "response_format")
        L.llama_sampler_chain_add(chain, grammar)
    eog = vocab.eog_tokens() if masks_eog(p, len(generated)) else []
    if eog:
        biases = (L.llama_logit_bias * len(eog))(*(L.llama_logit_bias(token, float("-inf")) for token in eog))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_logit_bias(vocab.size, len(eog), biases))
    if p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
        penalties = L.llama_sampler_init_penalties(
            vocab.size, PENALTY_LAST_N, p.repetition_penalty, p.frequency_penalty, p.presence_penalty
        )
        L.llama_sampler_chain_add(chain, penalties)
    if is_greedy(p):
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    else:
        if p.top_k > 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(p.top_k))
        if p.typical_p < 1.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_typical(p.typical_p, 1))
        if p.top_p < 1.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p > 0.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(p.min_p, 1))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(p.temperature))
        seed = L.LLAMA_DEFAULT_SEED if p.seed is None else p.seed & 0xFFFFFFFF
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
    # the whole history: a grammar must walk it from the start (penalties keep only their last N)
    for token in generated if p.json_schema is not None else generated[-PENALTY_LAST_N:]:
        L.llama_sampler_accept(chain, token)
    return chain


def log_softmax(L: Any, ctx: Any, index: int, vocab: Vocab) -> Any:
    """Row ``index`` of the last decode's logits as log-probabilities (float64, a copy): the model's
    own distribution, before penalties, masks, temperature and the sampling filters touch it."""
    import numpy as np

    row = np.array(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, index), shape=(vocab.size,)), np.float64)
    peak = row.max()
    row -= peak + np.log(np.exp(row - peak).sum())
    return row


def token_logprob(vocab: Vocab, logprobs: Any, token: int, top: int) -> TokenLogprob:
    """The chosen ``token``'s entry, with the ``top`` most likely tokens of ``logprobs`` (ties by
    token id, so the first is the token greedy decoding picks)."""
    import numpy as np

    best: list[int] = []
    if top > 0:
        top = min(top, len(logprobs))
        candidates = np.argpartition(-logprobs, top - 1)[:top]
        best = sorted((int(t) for t in candidates), key=lambda t: (-logprobs[t], t))
    return _entry(vocab, token, logprobs, tuple(_entry(vocab, t, logprobs) for t in best))


def _entry(vocab: Vocab, token: int, logprobs: Any, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
    """A token as OpenAI reports it: its raw bytes, and their text with U+FFFD for part of a character."""
    piece = vocab.shown(token)
    return TokenLogprob(piece.decode("utf-8", "replace"), float(logprobs[token]), tuple(piece), top)


def argmax(L: Any, ctx: Any, index: int, vocab: Vocab, mask_eog: bool) -> int:
    """The most likely token in row ``index`` of the last decode's logits."""
    import numpy as np

    row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, index), shape=(vocab.size,))
    if mask_eog and (eog := vocab.eog_tokens()):
        row[eog] = -np.inf  # this row is ours until the next decode
    return int(row.argmax())


def is_top_k_first(p: SamplingParams) -> bool:
    """Sampling whose chain keeps only the top k before anything else reads the vocabulary."""
    no_penalties = p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty
    return not is_greedy(p) and p.top_k > 0 and no_penalties and p.json_schema is None


#: top_candidates splits the logits into groups of this many
_GROUP = 128


def top_candidates(row: Any, k: int) -> Any | None:
    """Indices of every entry of ``row`` at least as large as the k-th largest group maximum: a set
    holding the k largest entries (k groups have a maximum at least that large, so the k-th largest
    entry is too), found from the groups' maxima instead of an order of the whole row. Group j holds
    every (n // 128)-th entry from j (the row seen as 128 rows: one vectorized maximum down them), the
    last n % 128 entries a group of their own. None for a row with NaN in it, which has no order."""
    import numpy as np

    n = len(row)
    columns = n // _GROUP
    whole = columns * _GROUP
    maxima = row[:whole].reshape(_GROUP, columns).max(axis=0)
    tail = row[whole:]
    bounds = np.append(maxima, tail.max()) if len(tail) else maxima
    if np.isnan(bounds).any():
        return None
    if len(bounds) <= k:
        return np.arange(n)
    threshold = np.partition(bounds, len(bounds) - k)[len(bounds) - k]
    groups = np.flatnonzero(maxima >= threshold)
    ids = (np.arange(_GROUP)[:, None] * columns + groups).ravel()
    ids = ids[row[ids] >= threshold]
    if len(tail):
        ids = np.concatenate([ids, whole + np.flatnonzero(tail >= threshold)])
    return ids


class Picker:
    """Picks each sequence's next token from its row of logits, by the cheapest path that picks what
    the sampler chain would: an argmax for plain greedy, the top-k candidates for top-k sampling, the
    whole vocabulary otherwise (``fast_greedy`` and ``fast_top_k`` off: always the whole vocabulary)."""

    def __init__(self, *, fast_greedy: bool = True, fast_top_k: bool = True) -> None:
        self.fast_greedy, self.fast_top_k = fast_greedy, fast_top_k
        self._buffer: Any = None  # candidates handed to the chain, reused while they fit

    def pick(
        self, L: Any, ctx: Any, vocab: Vocab, index: int, p: SamplingParams, sampler: Any, eog_masked: bool
    ) -> tuple[int, tuple[TokenLogprob, ...]]:
        """The next token from row ``index`` of the logits, and its log-probability when asked: read
        before sampling, since the shortcuts mask end-of-generation tokens in the row itself."""
        wanted = p.logprobs
        logprobs = None if wanted is None else log_softmax(L, ctx, index, vocab)
        if self.fast_greedy and is_plain_greedy(p):
            token = argmax(L, ctx, index, vocab, eog_masked)
        elif self.fast_top_k and is_top_k_first(p):
            token = self._sample_top_k(L, ctx, vocab, index, p.top_k, sampler, eog_masked)
        else:
            token = L.llama_sampler_sample(sampler, ctx, index)
        if logprobs is None or wanted is None:
            return token, ()
        return token, (token_logprob(vocab, logprobs, token, wanted),)

    def _sample_top_k(
        self, L: Any, ctx: Any, vocab: Vocab, index: int, k: int, sampler: Any, eog_masked: bool
    ) -> int:
        """What ``llama_sampler_sample`` does (apply the chain to candidates, take the selected one,
        accept it), with the candidates that can be in the top k in place of the vocabulary."""
        import ctypes

        import numpy as np

        row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, index), shape=(vocab.size,))
        if eog_masked and (eog := vocab.eog_tokens()):
            row[eog] = -np.inf  # as the chain's logit bias would; this row is ours until the next decode
        ids = top_candidates(row, k)
        if ids is None:  # a broken model's row: whatever the chain makes of it, as without the shortcut
            return int(L.llama_sampler_sample(sampler, ctx, index))
        if self._buffer is None or len(self._buffer) < len(ids):
            self._buffer = (L.llama_token_data * max(len(ids), 1024))()
        data = np.frombuffer(self._buffer, _token_data(), count=len(ids))
        data["id"], data["logit"], data["p"] = ids, row[ids], 0.0
        pointer = ctypes.cast(self._buffer, ctypes.POINTER(L.llama_token_data))
        candidates = L.llama_token_data_array(pointer, len(ids), -1, False)
        L.llama_sampler_apply(sampler, ctypes.byref(candidates))
        if not 0 <= candidates.selected < candidates.size:  # the chain ends in a draw, which selects
            raise RuntimeError(f"the sampler chain selected no token ({candidates.selected})")
        token = int(candidates.data[candidates.selected].id)  # the chain may move the candidates
        L.llama_sampler_accept(sampler, token)
        return token


@functools.cache
def _token_data() -> Any:
    """llama_token_data as a numpy record."""
    import numpy as np

    return np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
