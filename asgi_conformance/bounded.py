"""Waiting with a limit that a layer cannot stretch, and an event loop that always ends.

``asyncio.wait_for`` and ``asyncio.run`` both wait for a cancelled task to *finish*: a layer
whose ``receive()`` catches its cancellation and waits on would keep a suite test, and so the
whole run, from ever ending. Here a cancelled task gets a grace period, and is then left behind
with a clear verdict instead of a stuck CI job.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

CANCEL_GRACE = 5.0  # seconds a cancelled task gets to end before it is left behind

T = TypeVar("T")

# Tasks that ignored their cancellation, kept referenced so that asyncio does not print "Task was
# destroyed but it is pending!" for each when the loop they were left on is gone.
_ABANDONED: list[asyncio.Task[Any]] = []


class Ending(enum.Enum):
    """How a bounded wait ended, when it did not return the awaited result."""

    TIMED_OUT = "timed out, then ended when cancelled"
    IGNORED_CANCELLATION = "timed out, then ignored its cancellation"


class BoundExceeded(Exception):
    """The awaited call outlived its limit; ``ending`` says whether it at least obeyed the cancel."""

    def __init__(self, ending: Ending, seconds: float):
        super().__init__(f"{ending.value} ({seconds:g} s)")
        self.ending = ending
        self.seconds = seconds


async def within(awaitable: Awaitable[T], seconds: float, grace: float = CANCEL_GRACE) -> T:
    """``await awaitable`` for at most ``seconds`` (plus ``grace`` for its cancellation).

    Raises :class:`BoundExceeded` on time-out: a task that ignores its cancellation is left
    running rather than waited for.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:  # the caller gave up: so does what it waited for, as in wait_for
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if done:
        if not task.cancelled():
            task.exception()  # retrieved: an error raised while cancelling is not news here
        raise BoundExceeded(Ending.TIMED_OUT, seconds)
    _ABANDONED.append(task)
    raise BoundExceeded(Ending.IGNORED_CANCELLATION, seconds)


def run_on_own_loop(main: Callable[[], Coroutine[Any, Any, T]], grace: float = CANCEL_GRACE) -> T:
    """``asyncio.run(main())``, except that tasks left running are cancelled and waited for at
    most ``grace`` seconds (then abandoned with the loop), and so is the default executor."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            _cancel_leftovers(loop, grace)
            loop.run_until_complete(_bounded_quietly(loop.shutdown_asyncgens(), grace))
            loop.run_until_complete(_bounded_quietly(loop.shutdown_default_executor(), grace))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.wait(leftovers, timeout=grace))
    for task in leftovers:
        if not task.done():
            _ABANDONED.append(task)
        elif not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _bounded_quietly(awaitable: Awaitable[None], grace: float) -> None:
    try:
        await within(awaitable, grace, grace)
    except BoundExceeded:
        pass
