"""asyncio helpers the RabbitMQ layer needs: a time-limited wait that keeps its caller's
cancel, and settling a future from a pika callback that may come late.

Every wait with a time limit in this layer goes through :func:`within`, never
``asyncio.wait_for``: on Python 3.10/3.11 wait_for swallows a cancel that lands as the
awaited reply arrives, and a receive cancelled that way (by its caller's own wait_for)
would wait on forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """``asyncio.wait_for`` that never loses a cancel of its caller.

    On Python 3.10 and 3.11 wait_for returns the result when the caller is cancelled in the
    very turn the awaited future completes (CPython gh-86296): a receive cancelled by the
    user's ``wait_for(receive, t)`` just as the broker answered its queue.declare went on
    waiting for a message, and the user's wait_for waited for it forever. Here the cancel
    always wins (what was awaited is cancelled, as with wait_for, or its outcome dropped);
    past ``timeout`` it raises asyncio.TimeoutError.
    """
    future = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait((future,), timeout=timeout)
    except BaseException:
        if not future.cancel() and not future.cancelled():
            future.exception()  # it had finished: retrieved, so asyncio does not log it as lost
        raise
    if not future.done():
        future.cancel()
        raise asyncio.TimeoutError
    return future.result()


def settle(future: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Resolve ``future`` unless it already is (a reply after a timeout or a lost link)."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
