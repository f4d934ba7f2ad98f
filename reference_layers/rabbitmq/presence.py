"""Presence: whether this event loop ran lately, and so read every cancel the broker sent it.

A flush waits ``ACK_TIMEOUT`` for the loops whose consumers it ended to answer (flush_answers.py).
A loop that did not answer in time was not running: blocked, or stopped between
``run_until_complete`` calls. The broker's cancel may then lie unread in its socket when it
runs again, and a receive must not serve what it parked before that cancel. So the loop marks
that it runs (a timer, ``HEARTBEAT``); with no mark for ``AWAY`` (well under ``ACK_TIMEOUT``), a
receive makes a round trip on the consume channel before it serves anything parked: the
broker sends a cancel on the channel of its consumer, so it is read before that reply.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .errors import BrokerUnavailable
from .flush_answers import ACK_TIMEOUT
from .futures import settle, within
from .link import PREFETCH, Link

HEARTBEAT, AWAY = ACK_TIMEOUT / 8, ACK_TIMEOUT / 4  # seconds between marks; no mark for longer: it was away


async def qos_round_trip(carrier: Any, timeout: float) -> None:
    """basic.qos (the same prefetch again) on ``carrier`` and its reply: by then every frame the
    broker sent on that channel before it (a delivery, a consumer's cancel) has been read.
    Raises asyncio.TimeoutError past ``timeout``."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    carrier.basic_qos(prefetch_count=PREFETCH, callback=lambda frame: settle(done))
    await within(done, timeout)


class Presence:
    """Marks of one loop's running, from its creation (on that loop) until ``close``.
    ``marked_at`` is read on ``time.monotonic``'s clock, the one parked entries carry."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.marked_at = time.monotonic()
        self._timer: asyncio.TimerHandle | None = loop.call_later(HEARTBEAT, self._mark)

    def current(self) -> bool:
        """Whether the loop ran lately: what it holds is as the broker last told it."""
        return time.monotonic() - self.marked_at < AWAY

    def _mark(self) -> None:
        self.marked_at = time.monotonic()
        self._timer = self.loop.call_later(HEARTBEAT, self._mark)

    async def confirm(self, link: Link) -> None:
        """A round trip on the consume channel: every cancel the broker sent before is read."""
        try:
            await qos_round_trip(await link.consume_channel_ready(), link.config.timeout)
        except asyncio.TimeoutError:
            raise BrokerUnavailable("RabbitMQ did not answer basic.qos in time") from None
        self.marked_at = time.monotonic()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
