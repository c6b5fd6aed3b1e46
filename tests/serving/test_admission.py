"""Admission on its own: a request's sequences are admitted all together, in arrival order, and a waiter
that goes away leaves the queue at once."""

from __future__ import annotations

import asyncio

import pytest

from kaito_core.serving.admission import Admission, QueueFull


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_with_several_sequences_never_split_the_free_slots() -> None:
    # Two n=4 requests hold all 8 slots and four more n=4 requests wait; when the first finishes, its
    # 4 slots must go to one waiter whole, not one to each (which deadlocks every one of them).
    admission = Admission(8, queue_size=16)
    await admission.acquire(4)
    await admission.acquire(4)
    waiters = [asyncio.ensure_future(admission.acquire(4)) for _ in range(4)]
    await _settle()
    assert admission.waiting == 4 and admission.running == 8
    admission.release(4)
    await _settle()
    assert [w.done() for w in waiters] == [True, False, False, False]
    assert admission.running == 8 and admission.waiting == 3
    for index in range(1, 4):  # each finished request lets exactly the next one in
        admission.release(4)
        await _settle()
        assert waiters[index].done() and admission.waiting == 3 - index
    admission.release(4)
    admission.release(4)
    assert admission.running == 0


async def test_the_head_is_not_overtaken_by_smaller_requests() -> None:
    admission = Admission(4, queue_size=8)
    await admission.acquire(3)
    big = asyncio.ensure_future(admission.acquire(4))
    await _settle()
    small = asyncio.ensure_future(admission.acquire(1))  # one slot is free, but the head came first
    await _settle()
    assert not big.done() and not small.done()
    admission.release(3)
    await _settle()
    assert big.done() and not small.done()
    admission.release(4)
    await _settle()
    assert small.done()


async def test_a_cancelled_waiter_leaves_at_once_and_lets_the_next_in() -> None:
    admission = Admission(4, queue_size=8)
    await admission.acquire(2)
    head = asyncio.ensure_future(admission.acquire(4))  # needs all four: waits
    await _settle()
    behind = asyncio.ensure_future(admission.acquire(2))  # would fit, but queues behind the head
    await _settle()
    assert admission.waiting == 2 and not behind.done()
    head.cancel()
    await _settle()
    assert head.cancelled()
    assert behind.done() and admission.waiting == 0 and admission.running == 4


async def test_the_queue_limit_counts_requests() -> None:
    admission = Admission(2, queue_size=1)
    await admission.acquire(2)
    waiter = asyncio.ensure_future(admission.acquire(2))
    await _settle()
    with pytest.raises(QueueFull):
        await admission.acquire(1)
    waiter.cancel()
    await _settle()
    assert admission.waiting == 0


async def test_health_turns_503_when_requests_wait_and_nothing_moves(engine_factory) -> None:  # type: ignore[no-untyped-def]
    # The watchdog for a wedged door: nothing decodes (the engine runs no sequence), requests wait, and
    # no slot changed hands for stall_timeout. A liveness probe then restarts the pod.
    from kaito_core.serving.settings import ServerSettings
    from kaito_core.serving.state import ServerState

    state = ServerState(
        engine_factory(), ServerSettings(served_model_name="x", max_concurrency=1, stall_timeout=0)
    )
    state.ready = True
    try:
        assert state.health()[0] == 200  # idle: no work, no stall
        await state.admission.acquire(1)
        assert state.health()[0] == 200  # the engine is stalled only when something runs or waits
        queued = asyncio.ensure_future(state.admission.acquire(1))
        await _settle()
        code, body = state.health()
        assert code == 503 and "1 requests waiting" in body["error"]
        queued.cancel()
        await _settle()
        assert state.admission.waiting == 0 and state.health()[0] == 200
    finally:
        state.close()
