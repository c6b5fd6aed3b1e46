"""Picking the next token: a llama.cpp sampler chain per sequence, or an argmax for plain greedy.

A chain is built from a request's SamplingParams: end-of-generation tokens masked while ``min_tokens``
are not reached (or for good with ``ignore_eos``), penalties over the last tokens, then greedy or
top-k / typical / top-p / min-p / temperature / a seeded draw. Greedy without penalties skips the
chain: ``llama_sampler_sample`` first copies every logit into a candidate array, while an argmax over
the logits row picks the same token (the first maximum, as the greedy sampler does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaito_core.plugins import SamplingParams
from kaito_runtime_llamacpp.tokens import Vocab

#: Tokens the repetition/presence/frequency penalties look back over.
PENALTY_LAST_N = 64


def is_greedy(p: SamplingParams) -> bool:
    return p.greedy or p.temperature <= 0.0


def is_plain_greedy(p: SamplingParams) -> bool:
    """Greedy with no penalty: the argmax of the logits is the answer."""
    no_penalties = p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty
    return is_greedy(p) and no_penalties


def masks_eog(p: SamplingParams, generated: int) -> bool:
    """Whether end-of-generation tokens are forbidden after ``generated`` tokens."""
    return p.ignore_eos or generated < p.min_tokens


def make_sampler(L: Any, vocab: Vocab, p: SamplingParams, generated: Sequence[int]) -> Any:
    """A sampler chain for these params, having seen ``generated`` (a rebuilt chain relearns the
    history its penalties look at). The caller frees it with ``llama_sampler_free``."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
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
    for token in generated[-PENALTY_LAST_N:]:
        L.llama_sampler_accept(chain, token)
    return chain


def argmax(L: Any, ctx: Any, index: int, vocab: Vocab, mask_eog: bool) -> int:
    """The most likely token in row ``index`` of the last decode's logits."""
    import numpy as np

    row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, index), shape=(vocab.size,))
    if mask_eog and (eog := vocab.eog_tokens()):
        row[eog] = -np.inf  # this row is ours until the next decode
    return int(row.argmax())
