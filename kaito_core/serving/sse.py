"""Server-sent events, as the OpenAI API streams them: ``data: {json}`` events, an error event when
generation fails mid-stream, ``data: [DONE]`` at the end; and the merge of several sequences' chunks
(``n > 1``, several prompts) into one stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from pydantic import BaseModel

from kaito_core.plugins import Chunk

log = logging.getLogger("kaito.serving")

DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel | dict[str, object]) -> bytes:
    data = payload.model_dump_json() if isinstance(payload, BaseModel) else json.dumps(payload)
    return b"data: " + data.encode() + b"\n\n"


async def events(
    body: AsyncIterator[BaseModel], closing: Callable[[], Iterable[BaseModel]] = tuple
) -> AsyncIterator[bytes]:
    """The events of ``body``, then those ``closing()`` gives once it ended (a usage chunk), then
    [DONE]. An engine failure mid-stream becomes an error event and the stream still ends with [DONE],
    so a client never sees a torn one."""
    try:
        async for payload in body:
            yield event(payload)
    except Exception as exc:
        log.exception("generation failed")
        yield event({"error": {"message": f"generation failed: {exc}", "type": "server_error", "code": 500}})
        yield DONE
        return
    for payload in closing():
        yield event(payload)
    yield DONE


async def merge(streams: list[AsyncIterator[Chunk]]) -> AsyncIterator[tuple[int, Chunk]]:
    """Interleave several sequences' chunks as they come, each tagged with its sequence's index."""
    if len(streams) == 1:
        async for chunk in streams[0]:
            yield 0, chunk
        return
    queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
            await queue.put((index, None))
        except Exception as exc:
            await queue.put((index, exc))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
