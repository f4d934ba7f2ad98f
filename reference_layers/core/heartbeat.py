"""Heartbeat: whether an event loop ran lately, and so read what its server sent it.

A flush in one process deletes what other processes' event loops hold (messages and group copies
read ahead), and waits up to ``ACK_TIMEOUT`` for each loop that holds some to answer that it
dropped them. A loop that could not answer in time was not running: blocked, or stopped between
``run_until_complete`` calls, and the flush's news may lie unread in its socket when it runs
again. So a loop marks that it runs, every ``HEARTBEAT``; with no mark for ``AWAY`` (well under
``ACK_TIMEOUT``), it asks its server before it serves anything it holds. The Redis layer's flush
epochs (redis/flushes.py) and the RabbitMQ layer's presence (rabbitmq/presence.py) keep one each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

ACK_TIMEOUT = 2.0  # seconds a flush waits for the loops that hold what it deletes to answer
HEARTBEAT, AWAY = ACK_TIMEOUT / 8, ACK_TIMEOUT / 4  # seconds between marks; no mark for longer: it was away


class Heartbeat:
    """Marks that the event loop that started it runs, every HEARTBEAT until ``stop``.

    ``marked_at`` is read on ``clock`` (the clock its callers compare it with): a caller that
    has the time at hand compares itself, where a method call would cost a hot path."""

    __slots__ = ("marked_at", "_clock", "_timer")

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.marked_at = float("-inf")  # not started: away
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Mark now, and from now on every HEARTBEAT on ``loop`` (the running one by default),
        unless beating already."""
        if self._timer is None:
            self._beat(loop or asyncio.get_running_loop())
        else:
            self.mark()

    def mark(self) -> None:
        """The loop is known to have read what its server sent so far: as good as a beat."""
        self.marked_at = self._clock()

    def ran_lately(self) -> bool:
        return self._clock() - self.marked_at < AWAY

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self.marked_at = self._clock()
        self._timer = loop.call_later(HEARTBEAT, self._beat, loop)
