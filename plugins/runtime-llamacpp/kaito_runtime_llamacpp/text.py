"""Turning a stream of token pieces into text: UTF-8 split across tokens, and stop strings."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class IncrementalDetokenizer:
    """Bytes of token pieces in, complete characters out.

    A character can be split across tokens (byte-fallback tokens of an emoji or CJK text); an
    incremental UTF-8 decoder holds the incomplete tail until the next piece completes it, and
    replaces bytes that can never form a character instead of failing.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Holds back text that could be the start of a stop string until it is known not to be."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit). After a hit, stop feeding."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        hit = -1
        for stop in self._stops:
            at = buffer.find(stop)
            if at != -1 and (hit == -1 or at < hit):
                hit = at
        if hit != -1:
            self._held = ""
            return buffer[:hit], True
        keep = 0
        for stop in self._stops:
            # the longest suffix of buffer that is a proper prefix of this stop string
            for length in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:length]):
                    keep = length
                    break
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
