"""Non-streaming routes stop working for a client that has gone away.

Starlette cancels a streaming response when its client disconnects, which aborts the
engine request behind it. A plain JSON route would run to the end instead, so these
routes run their work as a task and cancel it once the client is gone.
"""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from api.server.errors import ApiError

T = TypeVar("T")
POLL_S = 0.25
CLIENT_CLOSED = 499  # nginx's status for a request its client abandoned


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; cancel it (aborting its generation) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ApiError(CLIENT_CLOSED, "the client closed the connection")
    finally:
        if not task.done():
            task.cancel()
        # The cancelled work's end is expected: read it, or asyncio logs it as an error.
        task.add_done_callback(_consume)


def _consume(task: "asyncio.Future[T]") -> None:
    if not task.cancelled():
        task.exception()
