"""From a sequence's tokens to the chunks its client receives: detokenized incrementally (a token may
end in half a character), stop strings held back until they match or cannot, and the finish reason."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kaito_core.plugins import Chunk, TokenLogprob
from kaito_runtime_llamacpp.text import IncrementalDetokenizer, StopMatcher
from kaito_runtime_llamacpp.tokens import Vocab


@dataclass(eq=False)
class Stream:
    """The engine's side of one sequence: where its text goes, and how its tokens are picked."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Chunk | BaseException]
    stops: StopMatcher
    detok: IncrementalDetokenizer = field(default_factory=IncrementalDetokenizer)
    sampler: Any = None
    eog_masked: bool = False


def chunk_for(
    work: Stream, vocab: Vocab, token: int, at_end: bool, logprobs: tuple[TokenLogprob, ...]
) -> tuple[Chunk, bool]:
    """The chunk a newly generated token makes (one token, its logprobs when asked), and whether it
    ends the sequence: an end-of-generation token or a completed stop string ("stop"), or ``at_end``
    (max_tokens or the context reached: "length"). Text still held back is flushed at the end."""
    if vocab.is_eog(token):
        text, _ = work.stops.feed(work.detok.flush())
        return Chunk(text + work.stops.flush(), 1, "stop", logprobs), True
    text, hit = work.stops.feed(work.detok.feed(vocab.piece(token)))
    if hit:
        return Chunk(text, 1, "stop", logprobs), True
    if at_end:
        tail, _ = work.stops.feed(work.detok.flush())
        return Chunk(text + tail + work.stops.flush(), 1, "length", logprobs), True
    return Chunk(text, 1, logprobs=logprobs), False
