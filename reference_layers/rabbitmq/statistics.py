"""``await layer.statistics()`` for the RabbitMQ layer: what the broker can tell.

- Waiting: a queue's ready messages (queue.declare passive: one round trip per channel, all
  at once), plus what this loop holds parked for the channel. A process-specific channel
  ``p!x`` shares its process's queue with its siblings and the broker cannot count them apart,
  so it reports the whole ``p!`` queue; listing every channel (``channels=None``) names such a
  queue by its non-local part ``p!``.
- Oldest age: always None. AMQP can only see a queue's head by taking it, and a message taken,
  even to be put back at once, stops counting against the queue's capacity meanwhile.
- Every channel: the prefix's registry queue (the one flush reads), read without taking its
  notes (got unacked, then put back).
- ChannelFull raised and group copies a full member missed: counters of this layer object
  (missed copies reach it through the broker: missed_copies.py).
- Connections: this event loop's connection to each configured node.
"""

from __future__ import annotations

import asyncio

from ..core.names import check_channel_name
from ..core.statistics import ChannelStatistics, Counters, LayerStatistics
from .errors import NOT_FOUND, BrokerRefused
from .link import Link
from .missed_copies import MissedCopies
from .receiving import Receiver
from .session import Session


async def read_statistics(session: Session, receiver: Receiver, missed: MissedCopies, counters: Counters,
                          channels: list[str] | None) -> LayerStatistics:
    names = session.shared.names
    table: dict[str, ChannelStatistics] = {}
    wanted = None if channels is None else [check_channel_name(channel) for channel in channels]
    if wanted is None or wanted:
        link = await session.get_link()
        if wanted is None:
            await session.ensure_registry(link)
            notes = {body.decode() for body in await link.peek_all(names.registry)}
            wanted = sorted(names.channel_of(queue) for queue in notes if names.is_channel_queue(queue))
        ready = await asyncio.gather(*(_ready_count(link, names.queue(channel)) for channel in wanted))
        for channel, count in zip(wanted, ready):
            waiting = count + receiver.parked_for(names.queue(channel), channel)
            table[channel] = ChannelStatistics(waiting, None)
    counters.group_deliveries_missed += await missed.take(session)
    return LayerStatistics(channels=table, channel_full_raised=counters.channel_full_raised,
                           group_deliveries_missed=counters.group_deliveries_missed,
                           connections=session.connection_states())


async def _ready_count(link: Link, queue: str) -> int:
    try:
        reply = await link.admin("queue_declare", queue, passive=True)
    except BrokerRefused as exc:
        if exc.reply_code != NOT_FOUND:
            raise
        return 0  # never made, read and expired, or flushed: nothing waits
    return int(reply.message_count)
