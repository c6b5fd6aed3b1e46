"""The sampling decisions that need no model: when greedy skips the chain, when EOG is masked."""

from __future__ import annotations

import dataclasses

from kaito_runtime_llamacpp.loading import flag
from kaito_runtime_llamacpp.sampling import is_greedy, is_plain_greedy, masks_eog

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
