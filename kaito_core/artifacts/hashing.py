"""sha256 of files and of streams, off the reading thread so hashing overlaps the I/O."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from pathlib import Path

BLOCK = 4 * 1024 * 1024
#: Buffers of a download pipeline: small enough that a block is still in the CPU cache when the hasher
#: reads it right after the socket wrote it (docs/artifacts.md has the measurement).
PIPE_BLOCK = 512 * 1024
PIPE_DEPTH = 8


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of a file, read in 4 MiB blocks (never whole)."""
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            if progress is not None:
                progress(n)
    return f"sha256:{digest.hexdigest()}"


class PipelinedHasher:
    """Hashes buffers on a second thread while the caller reads the next one.

    hashlib releases the GIL on large updates, so a download, its write and its sha256 take about as
    long as the slowest of the three instead of their sum. Buffers come from a small
    pool: at most ``depth`` x ``size`` bytes are in flight.
    """

    def __init__(
        self, initial: hashlib._Hash | None = None, size: int = PIPE_BLOCK, depth: int = PIPE_DEPTH
    ) -> None:
        self._hash = initial if initial is not None else hashlib.sha256()
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        for _ in range(depth):
            self._free.put(bytearray(size))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buffer, n = item
            self._hash.update(memoryview(buffer)[:n])
            self._free.put(buffer)

    def buffer(self) -> bytearray:
        """A free buffer to read into (blocks while the hasher is behind)."""
        return self._free.get()

    def submit(self, buffer: bytearray, n: int) -> None:
        self._full.put((buffer, n))

    def give_back(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._full.put(None)
            self._thread.join()
