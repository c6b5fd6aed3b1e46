"""The sampling decisions that need no model: when greedy skips the chain, when EOG is masked, which
candidates top-k sampling hands the chain."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from kaito_runtime_llamacpp.loading import flag
from kaito_runtime_llamacpp.sampling import (
    is_greedy,
    is_plain_greedy,
    is_top_k_first,
    masks_eog,
    top_candidates,
)

from kaito_core.plugins import SamplingParams


def test_plain_greedy_is_greedy_without_penalties() -> None:
    greedy = SamplingParams(greedy=True)
    assert is_greedy(greedy) and is_plain_greedy(greedy)
    assert is_plain_greedy(SamplingParams(temperature=0.0))
    assert not is_plain_greedy(dataclasses.replace(greedy, repetition_penalty=1.1))
    assert not is_plain_greedy(dataclasses.replace(greedy, presence_penalty=0.5))
    assert not is_greedy(SamplingParams(temperature=0.7))


def test_end_of_generation_is_masked_until_min_tokens_or_for_good_with_ignore_eos() -> None:
    params = SamplingParams(min_tokens=3)
    assert [masks_eog(params, n) for n in range(5)] == [True, True, True, False, False]
    assert masks_eog(SamplingParams(ignore_eos=True), 1000)
    assert not masks_eog(SamplingParams(), 0)


def test_option_booleans_read_strings_as_the_cli_gives_them() -> None:
    assert [flag(v) for v in (True, "true", "1", "on", "yes")] == [True] * 5
    assert [flag(v) for v in (False, "false", "0", "off", "no", "")] == [False] * 6


def test_top_k_shortcut_only_where_top_k_reads_the_vocabulary_first() -> None:
    sampled = SamplingParams(temperature=0.7, top_k=40)
    assert is_top_k_first(sampled)
    assert not is_top_k_first(dataclasses.replace(sampled, top_k=0))
    assert not is_top_k_first(dataclasses.replace(sampled, repetition_penalty=1.1))
    assert not is_top_k_first(dataclasses.replace(sampled, frequency_penalty=0.2))
    assert not is_top_k_first(dataclasses.replace(sampled, json_schema="{}"))
    assert not is_top_k_first(dataclasses.replace(sampled, temperature=0.0))


@pytest.mark.parametrize("n", [262144, 32000, 151936, 1000, 50])
@pytest.mark.parametrize("k", [1, 40, 200])
def test_top_candidates_hold_the_k_largest(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    columns = max(1, n // 128)  # top_candidates' groups: every columns-th entry
    for trial in range(25):
        row = (rng.standard_normal(n) * 4).astype(np.float32)
        if trial % 5 == 1:
            row = np.round(row)  # many ties
        if trial % 5 == 2:
            row[rng.integers(0, n, n // 10)] = -np.inf  # masked tokens
        if trial % 5 == 3:
            row[: min(n, 3 * k)] += 30  # the largest side by side, each in a group of its own
        if trial % 5 == 4:
            row[::columns] += 30  # the largest all in one group
        ids = top_candidates(row, k)
        assert ids is not None
        assert len(set(ids.tolist())) == len(ids)
        kth = np.sort(row)[::-1][min(k, n) - 1]
        assert set(np.flatnonzero(row > kth)) <= set(ids.tolist())  # everything above the k-th value
        assert len(ids) >= min(k, n) and (row[ids] >= kth).sum() >= min(k, n)  # and enough at it
        if n >= 32000 and trial % 5 in (0, 2):
            assert len(ids) < n // 8  # a few blocks' worth, not the vocabulary


def test_a_row_with_nan_has_no_top_candidates() -> None:
    row = np.zeros(32000, np.float32)
    row[12345] = np.nan
    assert top_candidates(row, 40) is None
