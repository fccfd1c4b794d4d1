"""Iterate an async generator from synchronous code: the one async pipeline, bridged.

The generator runs on a private event loop in a helper thread, so the caller may itself
be inside a running loop (a notebook) without the two meeting. Items cross over a queue;
an error raised by the generator is raised by the iterator. Closing the iterator early
cancels the generator, which closes what it holds open (an engine stream is aborted).
"""

import asyncio
import queue
import threading
from collections.abc import AsyncGenerator, Generator
from contextlib import aclosing, suppress
from typing import TypeVar

Item = TypeVar("Item")
_END = object()


def iterate(generator: AsyncGenerator[Item, None]) -> Generator[Item, None, None]:
    items: queue.SimpleQueue[tuple[object, BaseException | None]] = queue.SimpleQueue()
    loop = asyncio.new_event_loop()

    async def pump() -> None:
        try:
            async with aclosing(generator):
                async for item in generator:
                    items.put((item, None))
        except BaseException as error:
            items.put((_END, error))
            return
        items.put((_END, None))

    task = loop.create_task(pump())
    thread = threading.Thread(target=_run, args=(loop, task), name="pagedrag-sync", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        # NOTE: the loop may already have run to its end and closed: nothing to stop then.
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(task.cancel)
        thread.join()


def _run(loop: asyncio.AbstractEventLoop, task: "asyncio.Task[None]") -> None:
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
