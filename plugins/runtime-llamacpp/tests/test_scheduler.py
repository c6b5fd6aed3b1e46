"""The scheduler alone: admission, batch composition and preemption, with no model loaded."""

from __future__ import annotations

from kaito_runtime_llamacpp.scheduler import MIN_SHARED, Scheduler, Sequence, split_by_adapters

from kaito_core.plugins import SamplingParams

PARAMS = SamplingParams(max_tokens=8)


def seq(n: int, start: int = 0) -> Sequence:
    return Sequence(list(range(start, start + n)), PARAMS)


def test_waiting_sequences_take_the_lowest_free_ids_in_order() -> None:
    scheduler = Scheduler(max_batch=3)
    a, b, c, d = seq(4), seq(4), seq(4), seq(4)
    for s in (a, b, c, d):
        scheduler.submit(s)
    assert scheduler.admit() == [a, b, c]
    assert [s.seq_id for s in (a, b, c)] == [0, 1, 2] and list(scheduler.pending) == [d]
    scheduler.retire(b)
    assert scheduler.admit() == [d] and d.seq_id == 1


def test_the_head_of_the_queue_waits_for_cells_and_the_rest_wait_behind_it() -> None:
    scheduler = Scheduler(max_batch=4, kv_cells=20)
    running, big, small = seq(10), seq(12), seq(2)
    for s in (running, big, small):
        scheduler.submit(s)
    assert scheduler.admit() == [running]  # 10 + 1 committed; 12 more do not fit in 20
    assert list(scheduler.pending) == [big, small]  # first come, first served: small waits too
    scheduler.retire(running)
    assert scheduler.admit() == [big, small]


def test_an_idle_scheduler_admits_one_sequence_whatever_its_size() -> None:
    scheduler = Scheduler(max_batch=2, kv_cells=8)
    scheduler.submit(huge := seq(30))
    assert scheduler.admit() == [huge]


def test_a_step_decodes_every_generating_sequence_first_then_prefills_in_order() -> None:
    scheduler = Scheduler(max_batch=3)
    decoding, prefilling, waiting = seq(3), seq(6, start=100), seq(5, start=200)
    for s in (decoding, prefilling, waiting):
        scheduler.submit(s)
    scheduler.admit()
    decoding.prefilled = decoding.n_past = 3
    decoding.next_token = 42
    entries, carried = scheduler.plan_step(n_batch=5)
    assert [(e.seq.seq_id, e.token, e.pos, e.logits) for e in entries] == [
        (0, 42, 3, True),  # the decode token first, with its logits
        (1, 100, 0, False), (1, 101, 1, False), (1, 102, 2, False), (1, 103, 3, False),  # a chunk
    ]  # fmt: skip
    assert carried == [decoding, prefilling] and prefilling.prefilled == 4 and waiting.prefilled == 0
    entries, carried = scheduler.plan_step(n_batch=5)  # the rest of the prompt, logits on its last token
    assert [(e.token, e.logits) for e in entries[:2]] == [(104, False), (105, True)]
    assert prefilling.output_index == 1


def test_undo_restores_every_sequence_after_a_refused_batch() -> None:
    scheduler = Scheduler(max_batch=2)
    a, b = seq(4), seq(4)
    scheduler.submit(a)
    scheduler.submit(b)
    scheduler.admit()
    a.prefilled = a.n_past = 4
    a.next_token = 7
    scheduler.plan_step(n_batch=8)
    scheduler.undo_step()
    assert (a.n_past, a.prefilled, a.next_token, a.output_index) == (4, 4, 7, -1)
    assert (b.n_past, b.prefilled) == (0, 0)


def test_preemption_takes_the_last_admitted_and_recomputes_it_exactly() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=100)
    first, last = seq(5), seq(5, start=50)
    scheduler.submit(first)
    scheduler.submit(last)
    scheduler.admit()
    last.prefilled = last.n_past = 5
    last.generated = [9, 8]
    last.next_token = 8
    assert scheduler.preemption_victim() is last
    assert scheduler.preempt(last) == 1
    assert last.prompt == [50, 51, 52, 53, 54, 9, 8] and (last.n_past, last.prefilled, last.next_token) == (
        0,
        0,
        None,
    )
    assert list(scheduler.pending) == [last] and scheduler.preemptions == 1
    assert scheduler.admit() == []  # nothing is admitted until a sequence ends
    scheduler.retire(first)
    assert scheduler.admit() == [last]


def test_a_lone_sequence_is_never_preempted() -> None:
    scheduler = Scheduler(max_batch=2, kv_cells=4)
    scheduler.submit(seq(3))
    scheduler.admit()
    assert scheduler.preemption_victim() is None


def test_cancelled_waiters_are_dropped() -> None:
    scheduler = Scheduler(max_batch=1)
    running, gone, kept = seq(2), seq(2), seq(2)
    for s in (running, gone, kept):
        scheduler.submit(s)
    scheduler.admit()
    gone.cancelled = True
    assert scheduler.drop_cancelled_pending() == [gone] and list(scheduler.pending) == [kept]


# -- the prompt-prefix cache ---------------------------------------------------------------------------


def _finish(scheduler: Scheduler, s: Sequence, generated: list[int]) -> int:
    """Run ``s`` to its end as the engine would: prompt prefilled, ``generated`` decoded but the last."""
    s.prefilled = len(s.prompt)
    s.generated = list(generated)
    s.n_past = len(s.prompt) + len(generated) - 1
    return scheduler.retire(s, keep=True)


def test_a_newcomer_resumes_past_the_longest_cached_prefix() -> None:
    scheduler = Scheduler(max_batch=3)
    turn1, other = Sequence([1, 2, 3, 4], PARAMS), Sequence([9, 9], PARAMS)
    for s in (turn1, other):
        scheduler.submit(s)
    scheduler.admit()
    id1 = _finish(scheduler, turn1, [5, 6, 7])
    _finish(scheduler, other, [8])
    assert scheduler.cached[id1] == [1, 2, 3, 4, 5, 6]  # the last sampled token was never decoded
    turn2 = Sequence([1, 2, 3, 4, 5, 6, 7, 10, 11], PARAMS)  # the chat so far plus a new message
    scheduler.submit(turn2)
    assert scheduler.admit() == [turn2]
    assert turn2.seq_id == id1 and turn2.reused == 6 and turn2.n_past == turn2.prefilled == 6
    assert turn2.trim_from == -1  # every cached token is used: nothing to cut
    entries, _ = scheduler.plan_step(n_batch=16)
    assert [e.token for e in entries] == [7, 10, 11] and [e.pos for e in entries] == [6, 7, 8]
    assert scheduler.reused_tokens == 6 and id1 not in scheduler.cached


def test_a_cached_prefix_is_cut_where_the_prompts_differ_and_the_last_token_is_decoded_again() -> None:
    scheduler = Scheduler(max_batch=2)
    first = Sequence([1, 2, 3, 4, 5], PARAMS)
    scheduler.submit(first)
    scheduler.admit()
    _finish(scheduler, first, [6, 7])
    branch = Sequence([1, 2, 3, 9], PARAMS)
    scheduler.submit(branch)
    scheduler.admit()
    assert branch.reused == 3 and branch.trim_from == 3  # the engine removes positions 3..
    same = Sequence([1, 2, 3, 9], PARAMS)  # the very same prompt again: its last token is recomputed
    _finish(scheduler, branch, [4])
    scheduler.submit(same)
    scheduler.admit()
    assert same.reused == 3 and same.trim_from == 3
    entries, _ = scheduler.plan_step(n_batch=16)
    assert [e.token for e in entries] == [9] and entries[0].logits


def test_cached_prefixes_give_their_cells_back_when_the_pool_is_short() -> None:
    scheduler = Scheduler(max_batch=4, kv_cells=20)
    a = Sequence(list(range(10)), PARAMS)
    scheduler.submit(a)
    scheduler.admit()
    id_a = _finish(scheduler, a, [50, 51])
    assert len(scheduler.cached[id_a]) == 11
    running = Sequence(list(range(100, 108)), PARAMS)  # no shared prefix: 8 + 11 cached fit in 20
    scheduler.submit(running)
    scheduler.admit()
    assert scheduler.evictions == [] and id_a in scheduler.cached
    other = Sequence(list(range(200, 206)), PARAMS)  # 8 + 6 + 11 cached would not fit: evicted first
    scheduler.submit(other)
    assert scheduler.admit() == [other]
    assert scheduler.evictions == [id_a] and not scheduler.cached


def test_without_the_cache_nothing_is_kept() -> None:
    scheduler = Scheduler(max_batch=2, prefix_cache=False)
    a = Sequence([1, 2, 3], PARAMS)
    scheduler.submit(a)
    scheduler.admit()
    _finish(scheduler, a, [4])
    assert not scheduler.cached


def test_a_step_splits_into_one_batch_per_adapter_set_the_applied_one_first() -> None:
    scheduler = Scheduler(max_batch=4)
    tuned, base, tuned2 = ((0, 1.0),), (), ((0, 1.0),)
    a, b, c = (Sequence([1, 2, 3], PARAMS, adapters=k) for k in (tuned, base, tuned2))
    d = Sequence([7, 8], PARAMS, adapters=((1, 0.5),))
    for s in (a, b, c, d):
        scheduler.submit(s)
    scheduler.admit()
    entries, carried = scheduler.plan_step(n_batch=16)
    groups = split_by_adapters(entries, carried, current=())
    assert [g.adapters for g in groups] == [(), tuned, ((1, 0.5),)]  # what the context applies first
    assert [[s.seq_id for s in g.carried] for g in groups] == [[1], [0, 2], [3]]  # ascending in each
    for group in groups:  # each batch holds only its sequences' tokens, its rows numbered from 0
        assert {e.seq.adapters for e in group.entries} == {group.adapters}
        assert [s.output_index for s in group.carried] == [i for i, e in enumerate(group.entries) if e.logits]
    assert sum(len(g.entries) for g in groups) == len(entries) == 11
    # the second batch refused: it and the third are undone, the first (decoded) is not
    rest = groups[1:]
    scheduler.undo_step([s for g in rest for s in g.carried])
    assert b.n_past == 3 and a.n_past == c.n_past == d.n_past == 0


def test_a_cached_prefix_serves_only_the_adapter_set_it_was_computed_under() -> None:
    scheduler = Scheduler(max_batch=2)
    tuned = ((0, 1.0),)
    first = Sequence([1, 2, 3, 4], PARAMS, adapters=tuned)
    scheduler.submit(first)
    scheduler.admit()
    cached_id = _finish(scheduler, first, [5, 6])
    base = Sequence([1, 2, 3, 4, 5, 9], PARAMS)  # the same prefix, under no adapter
    scheduler.submit(base)
    scheduler.admit()
    assert base.reused == 0 and base.seq_id != cached_id and cached_id in scheduler.cached
    again = Sequence([1, 2, 3, 4, 5, 9], PARAMS, adapters=tuned)
    scheduler.submit(again)
    scheduler.admit()
    assert again.seq_id == cached_id and again.reused == 5


SYSTEM = list(range(1000, 1040))  # a 40-token system prompt two users send at once


def test_a_newcomer_sharing_a_running_prompt_takes_its_cells_and_prefills_only_the_rest() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    first, second = Sequence([*SYSTEM, 1, 2, 3], PARAMS), Sequence([*SYSTEM, 7, 8], PARAMS)
    for s in (first, second):
        scheduler.submit(s)
    assert scheduler.admit() == [first, second]
    assert second.donor is first and second.shared == 40 and second.seq_id != first.seq_id
    entries, carried = scheduler.plan_step(n_batch=512)
    # the donor stops at the shared length, the follower waits for it
    assert carried == [first] and [e.pos for e in entries] == list(range(40))
    assert not any(e.logits for e in entries)
    assert scheduler.take_shared() == [(first, second)]
    assert second.n_past == second.prefilled == 40 and second.donor is None
    entries, carried = scheduler.plan_step(n_batch=512)
    assert [(e.seq, e.token, e.pos) for e in entries] == [
        (first, 1, 40), (first, 2, 41), (first, 3, 42), (second, 7, 40), (second, 8, 41),
    ]  # fmt: skip
    assert scheduler.shared_tokens == 40 and scheduler.take_shared() == []


def test_a_follower_whose_donor_already_holds_the_prefix_takes_it_at_once() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    first = Sequence([*SYSTEM, 1], PARAMS)
    scheduler.submit(first)
    scheduler.admit()
    scheduler.plan_step(n_batch=512)  # the whole prompt: 41 tokens in the cache
    later = Sequence([*SYSTEM, 5, 6], PARAMS)
    scheduler.submit(later)
    scheduler.admit()
    assert scheduler.take_shared() == [(first, later)] and later.n_past == 40


def test_a_follower_whose_donor_leaves_first_prefills_everything() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    first, second = Sequence([*SYSTEM, 1], PARAMS), Sequence([*SYSTEM, 2], PARAMS)
    for s in (first, second):
        scheduler.submit(s)
    scheduler.admit()
    first.cancelled = True
    scheduler.retire(first)
    assert scheduler.take_shared() == [] and second.donor is None
    entries, _ = scheduler.plan_step(n_batch=512)
    assert [e.pos for e in entries] == list(range(41)) and scheduler.shared_tokens == 0


def test_a_preempted_donor_lets_its_follower_go() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    first, second = Sequence([*SYSTEM, 1], PARAMS), Sequence([*SYSTEM, 2], PARAMS)
    for s in (first, second):
        scheduler.submit(s)
    scheduler.admit()
    third = Sequence([*SYSTEM, 3], PARAMS)
    scheduler.submit(third)
    scheduler.admit()
    assert third.donor is first
    scheduler.preempt(first)
    assert scheduler.take_shared() == [] and second.donor is None and third.donor is None


def test_no_sharing_for_short_prefixes_other_adapters_or_slices_of_their_own() -> None:
    short = list(range(MIN_SHARED - 1))
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    for s in (Sequence([*short, 1], PARAMS), Sequence([*short, 2], PARAMS)):
        scheduler.submit(s)
    assert all(s.donor is None for s in scheduler.admit())
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    for s in (Sequence([*SYSTEM, 1], PARAMS), Sequence([*SYSTEM, 2], PARAMS, adapters=((0, 1.0),))):
        scheduler.submit(s)
    assert all(s.donor is None for s in scheduler.admit())
    scheduler = Scheduler(max_batch=3)  # a KV slice per sequence: llama.cpp cannot share a part of one
    for s in (Sequence([*SYSTEM, 1], PARAMS), Sequence([*SYSTEM, 2], PARAMS)):
        scheduler.submit(s)
    assert all(s.donor is None for s in scheduler.admit())


def test_another_conversation_copies_the_shared_part_of_a_cache_and_leaves_it_whole() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=1000)
    talk = list(range(1, 41))
    turn1 = Sequence(SYSTEM + talk, PARAMS)
    scheduler.submit(turn1)
    scheduler.admit()
    id1 = _finish(scheduler, turn1, [50, 51])
    other = Sequence([*SYSTEM, 9], PARAMS)  # shares the system prompt only
    scheduler.submit(other)
    scheduler.admit()
    assert other.copy_from == id1 and other.seq_id != id1 and other.reused == 40 and other.trim_from == -1
    assert scheduler.cached[id1] == SYSTEM + talk + [50]
    scheduler.plan_step(n_batch=512)
    turn2 = Sequence(SYSTEM + talk + [50, 51, 5], PARAMS)  # the cache holds 81 of its tokens, the donor 40
    scheduler.submit(turn2)
    scheduler.admit()
    assert turn2.donor is None and turn2.copy_from == -1 and turn2.seq_id == id1 and turn2.reused == 81


def test_cells_shared_with_a_running_donor_count_once() -> None:
    scheduler = Scheduler(max_batch=3, kv_cells=70)
    first, second = Sequence([*SYSTEM, *range(10)], PARAMS), Sequence([*SYSTEM, *range(20, 30)], PARAMS)
    scheduler.submit(first)
    scheduler.admit()
    scheduler.plan_step(n_batch=512)  # 50 cells
    scheduler.submit(second)  # 50 more would not fit in 70; its own 10 do
    assert scheduler.admit() == [second] and second.donor is first
    assert scheduler.cells_committed() == 50 + 10
    scheduler.take_shared()
    assert scheduler.cells_committed() == 50 + 10
    scheduler.retire(first)  # the donor's cells are gone: the follower holds them alone
    assert scheduler.cells_committed() == 50
