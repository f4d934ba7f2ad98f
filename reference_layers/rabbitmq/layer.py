"""RabbitMQChannelLayer: the public layer, glue between LayerCore and the per-loop sessions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..core.codec import DEFAULT_MESSAGE_SIZE_LIMIT
from ..core.config import reject_unknown_keys
from ..core.errors import ChannelFull
from ..core.layer_core import LayerCore
from ..core.loops import PerLoop
from ..core.names import is_process_specific, non_local_name
from ..core.statistics import STATISTICS_EXTENSION, Counters, LayerStatistics
from . import broker_ops
from .carried import CarriedOver, take_on
from .config import parse_broker_config
from .link import Link
from .local_book import LocalBook
from .memberships import Memberships
from .missed_copies import MissedCopies
from .names import BrokerNames
from .process_groups import GroupFeed
from .receiving import Receiver
from .session import Session, Shared
from .statistics import read_statistics


@dataclass(frozen=True)
class _OnLoop:
    """What one event loop holds for the layer: its session and the receives waiting on it."""

    session: Session
    receiver: Receiver
    feed: GroupFeed
    carried: CarriedOver  # the layer object's: what this loop holds outlives it there

    async def close(self) -> None:
        self.carried.leave(self.receiver)
        self.feed.close()
        await self.session.close()  # tells the receiver too


_CONFIG_KEYS = ("url", "urls", "prefix", "expiry", "group_expiry", "capacity", "channel_capacity",
                "symmetric_encryption_keys", "message_size_limit", "timeout", "heartbeat")


class RabbitMQChannelLayer(LayerCore):
    """A Django Channels layer on RabbitMQ (pika), for ``CHANNEL_LAYERS["default"]["BACKEND"]``.

    CONFIG: ``url`` (``amqp://``, or ``amqps://`` for TLS: pika's default context checks the
    broker's certificate, so a private authority goes in ``SSL_CERT_FILE`` or pika's
    ``ssl_options`` URL argument) or ``urls`` (cluster nodes, tried in turn),
    ``prefix``, ``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``,
    ``symmetric_encryption_keys``, ``message_size_limit``, ``timeout`` (seconds a call may
    wait for an unreachable broker before BrokerUnavailable), ``heartbeat``.

    ``await layer.statistics(channels=None)`` reports messages waiting per channel, ChannelFull
    raised and group copies a full member missed, and the connection state (statistics.py
    says what the broker can and cannot tell).
    """

    extensions = [*LayerCore.extensions, STATISTICS_EXTENSION]

    def __init__(self, url=None, urls=None, prefix="asgi", expiry=60, group_expiry=86400,
                 capacity=100, channel_capacity=None, symmetric_encryption_keys=None,
                 message_size_limit=DEFAULT_MESSAGE_SIZE_LIMIT, timeout=15.0, heartbeat=10, **unknown):
        reject_unknown_keys("RabbitMQChannelLayer", unknown, _CONFIG_KEYS)
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity,
                         channel_capacity=channel_capacity, message_size_limit=message_size_limit,
                         symmetric_encryption_keys=symmetric_encryption_keys)
        self.broker_config = parse_broker_config(url=url, urls=urls, prefix=prefix, timeout=timeout,
                                                 heartbeat=heartbeat)
        self.prefix = prefix
        self._names = BrokerNames(prefix)
        self._shared = Shared(self.broker_config, self._names, self.capacities.for_channel, self.expiry,
                              f"asgi-layer {prefix} {self.client_prefix}")
        # What this instance added, added again by each session that connects to a broker that lost it.
        self._memberships = Memberships()
        self._loops: PerLoop[_OnLoop] = PerLoop(self._on_loop, _OnLoop.close)
        self._own_queues: set[str] = set()  # this instance's process queues, deleted by close()
        self._counters = Counters()
        self._missed = MissedCopies(self._names, f"{prefix}.{self.client_prefix}")
        self._book = LocalBook()  # own members of groups, fed one copy per process (process_groups.py)
        self._carried = CarriedOver()  # what ended loops held, for the next one (carried.py)

    def _on_loop(self, loop: asyncio.AbstractEventLoop) -> _OnLoop:
        async def on_connect(session: Session, link: Link) -> None:
            await take_on(self._carried, session, link, receiver, self._book)
            if not (len(self._memberships) or self._book.queues()):
                return
            kept = await session.broker_kept_state(link)
            await self._memberships.restore(session, link, kept)
            await feed.restore(link, kept)

        session = Session(self._shared, loop, on_connect=on_connect)
        receiver = session.events = Receiver(session)
        feed = GroupFeed(session, receiver, self._book, f"{self.prefix}.{self.client_prefix}", self._count_missed)
        return _OnLoop(session, receiver, feed, self._carried)

    def _count_missed(self, copies: int) -> None:
        self._counters.group_deliveries_missed += copies

    def _fed_here(self, channel: str) -> bool:
        """One of this object's own ``p!x`` channels: its group copies come one per process."""
        return is_process_specific(channel) and self._names.queue(channel) in self._own_queues

    @property
    def broker_url(self) -> str | None:
        """The URL of the node this instance is connected to now (None while not connected)."""
        return self._shared.active_url if self._shared.sessions_open else None

    async def new_channel(self, prefix: str = "specific") -> str:
        name = self.namer.new_channel(prefix)
        self._own_queues.add(self._names.queue(non_local_name(name)))  # deleted again by close()
        return name

    async def _send(self, channel: str, data: bytes) -> None:
        here = self._loops.current()
        try:
            await broker_ops.send(here.session, here.receiver, channel, data)
        except ChannelFull:
            self._counters.channel_full_raised += 1
            raise

    async def receive(self, channel: str) -> dict:
        """LayerCore's receive with no coroutine of the receiver's when its queue is consumed here
        already, and no name check for a channel checked before: a fan-out's members wake by the
        hundred and each waits again at once."""
        queue = self.receivable_as(channel, self._names.queue)
        here = self._loops.current()
        receiver = here.receiver
        if self._carried.pending:  # a loop that ended left messages: this one takes them on first
            await take_on(self._carried, here.session, await here.session.get_link(), receiver, self._book)
        state = receiver.queues.get(queue)
        if state is None:
            return self.codec.decode(await receiver.receive(channel))
        if channel in state.parked.first:  # a late fan-out's members: each takes its copy here
            body = receiver.take_parked(state, channel)
            if body is not None:
                return self.codec.decode(body)
            if channel in state.parked.first:  # left there: this loop was away, a flush may have come
                return self.codec.decode(await receiver.receive(channel))
        future = receiver.wait_at_once(state, channel)
        if future is None:
            return self.codec.decode(await receiver.receive(channel))
        try:
            body = await future
        except BaseException:
            receiver.abandon(channel, future)
            raise
        return self.codec.decode(body)

    async def _receive(self, channel: str) -> bytes:
        return await self._loops.current().receiver.receive(channel)

    async def _group_add(self, group: str, channel: str) -> None:
        here = self._loops.current()
        # An object that adds members usually sends to their groups: its notice queue is made
        # now, so the first group_send does not wait for a queue to be created on the broker.
        await self._missed.ensure(here.session)
        if self._fed_here(channel):
            await here.feed.add(group, channel, self.group_expiry)
        else:
            await self._memberships.add(here.session, group, channel, self.group_expiry)

    async def _group_discard(self, group: str, channel: str) -> None:
        here = self._loops.current()
        if self._fed_here(channel):
            await here.feed.discard(group, channel)
        else:
            await self._memberships.discard(here.session, group, channel)

    async def _group_send(self, group: str, data: bytes) -> None:
        here = self._loops.current()
        await broker_ops.group_send(here.session, self._missed, here.feed, group, data)

    async def statistics(self, channels: list[str] | None = None) -> LayerStatistics:
        """Messages waiting per channel (``channels``, or every channel of this prefix), this
        object's ChannelFull and missed-group-copy counts, and this loop's connection to each
        node. The oldest message's age is None: AMQP cannot read it (statistics.py)."""
        here = self._loops.current()
        return await read_statistics(here.session, here.receiver, self._missed, self._counters, channels)

    async def _flush(self) -> None:
        here = self._loops.current()
        await broker_ops.flush(here.session, here.receiver, self._memberships, here.feed)
        self._carried.drop()

    async def _close(self) -> None:
        """Delete this instance's process queues and memberships, close its connections."""
        here = self._loops.existing()
        mine = self._memberships.take_of_queues(self._own_queues, self._names)
        own = sorted(self._names.membership(group, channel) for group, channel in mine) + sorted(self._own_queues)
        own += sorted(self._names.group_copies(queue) for queue in self._own_queues)
        for queue in self._own_queues:
            self._book.forget(queue)
        if self._missed.used:
            own.append(self._missed.queue)
        session = here.session if here is not None else None
        if own and session is not None and session.link is not None and session.link.open:
            try:
                for queue in own:
                    await session.delete_queue(queue)
            except ConnectionError:
                pass  # broker gone: its queues expire on their own (x-expires)
        current = asyncio.get_running_loop()
        for loop, each in self._loops.pop_all():
            if loop is current:
                await each.close()
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(_close_soon, each)
                except RuntimeError:
                    pass  # that loop closed meanwhile: its connection went with it
        self._carried.drop(self._own_queues)  # deleted above (a loop that ends later: its next connect looks)


def _close_soon(each: _OnLoop) -> None:
    """On the loop that owns ``each``: close it there (its connection belongs to that loop)."""
    asyncio.ensure_future(each.close())
