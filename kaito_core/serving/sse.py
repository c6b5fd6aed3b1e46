"""Server-sent events, as the OpenAI API streams them: ``data: {json}`` events, an error event when
generation fails mid-stream, ``data: [DONE]`` at the end; and the merge of several sequences' chunks
(``n > 1``, several prompts) into one stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from pydantic import BaseModel

from kaito_core.plugins import Chunk

log = logging.getLogger("kaito.serving")

DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel | dict[str, object]) -> bytes:
    data = payload.model_dump_json() if isinstance(payload, BaseModel) else json.dumps(payload)
    return b"data: " + data.encode() + b"\n\n"


#: The last event of a stream the server cut at the end of its shutdown grace period.
CUT: dict[str, object] = {
    "error": {
        "message": "the server is shutting down and its grace period (--grace-period) ended before this "
        "generation did; retry the request",
        "type": "server_error",
        "code": 503,
    }
}


async def events(
    body: AsyncIterator[BaseModel],
    closing: Callable[[], Iterable[BaseModel]] = tuple,
    cut: asyncio.Event | None = None,
) -> AsyncIterator[bytes]:
    """The events of ``body``, then those ``closing()`` gives once it ended (a usage chunk), then
    [DONE]. An engine failure mid-stream becomes an error event and the stream still ends with [DONE],
    and so does ``cut`` being set (a shutdown's grace period ending): a client never sees a torn one."""
    iterator = body.__aiter__()
    stop = asyncio.ensure_future(cut.wait()) if cut is not None else None
    step: Awaitable[BaseModel] | None = None
    try:
        while True:
            step = iterator.__anext__()
            if stop is not None:
                step = asyncio.ensure_future(step)
                await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                    yield event(CUT)
                    yield DONE
                    return
            try:
                payload = await step
            except StopAsyncIteration:
                break
            yield event(payload)
    except Exception as exc:
        log.exception("generation failed")
        yield event({"error": {"message": f"generation failed: {exc}", "type": "server_error", "code": 500}})
        yield DONE
        return
    finally:
        if stop is not None:
            stop.cancel()
            if isinstance(step, asyncio.Future) and not step.done():
                # this stream was cancelled (its client left): so is the generation it was waiting on
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
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
