"""A bounded queue in front of the engine: `max_concurrency` sequences run, `queue_size` requests wait,
the rest are turned away (429) instead of piling up latency for everyone.

A request with ``n`` sequences is admitted all at once or not at all, in arrival order: slots handed
out one at a time would let several waiters each hold part of what they need and wait for ever for
the rest (two ``n=4`` requests running, four more waiting, and nothing is served again). A waiter
whose client goes away (its task is cancelled) leaves the queue at once, and the head waiter leaving
lets the ones behind it in.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field


class QueueFull(Exception):
    def __init__(self, queue_size: int) -> None:
        super().__init__(f"the request queue is full ({queue_size} waiting, --queue-size); retry later")
        self.queue_size = queue_size


@dataclass(eq=False)
class _Waiter:
    count: int
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Admission:
    def __init__(self, max_concurrency: int, queue_size: int) -> None:
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.running = 0
        self._queue: deque[_Waiter] = deque()
        #: monotonic time slots last changed hands: the watchdog's measure of progress at the door
        self.last_change = time.monotonic()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def free(self) -> int:
        return self.max_concurrency - self.running

    async def acquire(self, count: int = 1) -> None:
        """Take `count` slots (one per sequence) together, waiting in the queue when they are not free."""
        if count > self.max_concurrency:
            raise ValueError(f"{count} slots asked of {self.max_concurrency}")
        if not self._queue and count <= self.free:
            self._take(count)
            return
        if len(self._queue) >= self.queue_size:
            raise QueueFull(self.queue_size)
        waiter = _Waiter(count)
        self._queue.append(waiter)
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(count)  # granted just as it was cancelled: hand the slots on
            else:
                self._queue.remove(waiter)
                self._wake()  # the head left: those behind it may fit now
            raise

    def release(self, count: int = 1) -> None:
        self.running -= count
        self.last_change = time.monotonic()
        self._wake()

    def _take(self, count: int) -> None:
        self.running += count
        self.last_change = time.monotonic()

    def _wake(self) -> None:
        # First come, first served: the head waits until all its slots are free, and nobody overtakes it
        # (a stream of small requests would otherwise starve a large one for ever).
        while self._queue and self._queue[0].count <= self.free:
            waiter = self._queue.popleft()
            self._take(waiter.count)
            waiter.future.set_result(None)
