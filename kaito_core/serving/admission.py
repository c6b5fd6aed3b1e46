"""A bounded queue in front of the engine: `max_concurrency` sequences run, `queue_size` wait, the rest
are turned away (429) instead of piling up latency for everyone."""

from __future__ import annotations

import asyncio


class QueueFull(Exception):
    def __init__(self, queue_size: int) -> None:
        super().__init__(f"the request queue is full ({queue_size} waiting, --queue-size); retry later")
        self.queue_size = queue_size


class Admission:
    def __init__(self, max_concurrency: int, queue_size: int) -> None:
        self._slots = asyncio.Semaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.waiting = 0
        self.running = 0

    async def acquire(self, count: int = 1) -> None:
        """Take `count` slots (one per choice), waiting in the queue when all are busy."""
        if self._slots.locked() and self.waiting >= self.queue_size:
            raise QueueFull(self.queue_size)
        self.waiting += 1
        taken = 0
        try:
            for _ in range(count):
                await self._slots.acquire()
                taken += 1
        except BaseException:
            for _ in range(taken):
                self._slots.release()
            raise
        finally:
            self.waiting -= 1
        self.running += count

    def release(self, count: int = 1) -> None:
        self.running -= count
        for _ in range(count):
            self._slots.release()
