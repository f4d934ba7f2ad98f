"""Presence: whether this event loop ran lately, and so read every cancel the broker sent it.

A flush waits ``ACK_TIMEOUT`` for the loops whose consumers it ended to answer (flush_answers.py).
A loop that did not answer in time was not running: blocked, or stopped between
``run_until_complete`` calls. The broker's cancel may then lie unread in its socket when it
runs again, and a receive must not serve what it parked before that cancel. So the loop keeps a
heartbeat (core/heartbeat.py); with no beat for ``AWAY`` (well under ``ACK_TIMEOUT``), a
receive makes a round trip on the consume channel before it serves anything parked: the
broker sends a cancel on the channel of its consumer, so it is read before that reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.heartbeat import AWAY, Heartbeat
from .errors import BrokerUnavailable
from .futures import settle, within
from .link import PREFETCH, Link

__all__ = ["AWAY", "Presence", "qos_round_trip"]


async def qos_round_trip(carrier: Any, timeout: float) -> None:
    """basic.qos (the same prefetch again) on ``carrier`` and its reply: by then every frame the
    broker sent on that channel before it (a delivery, a consumer's cancel) has been read.
    Raises asyncio.TimeoutError past ``timeout``."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    carrier.basic_qos(prefetch_count=PREFETCH, callback=lambda frame: settle(done))
    await within(done, timeout)


class Presence(Heartbeat):
    """One loop's heartbeat (core/heartbeat.py), from its creation until ``stop``: ``marked_at``
    is read on ``time.monotonic``'s clock, the one parked entries carry."""

    __slots__ = ()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self.start(loop)

    async def confirm(self, link: Link) -> None:
        """A round trip on the consume channel: every cancel the broker sent before is read."""
        try:
            await qos_round_trip(await link.consume_channel_ready(), link.config.timeout)
        except asyncio.TimeoutError:
            raise BrokerUnavailable("RabbitMQ did not answer basic.qos in time") from None
        self.mark()
