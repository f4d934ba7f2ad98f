"""RabbitMQChannelLayer: the public layer, glue between LayerCore and the per-loop sessions."""

from __future__ import annotations

import asyncio

from ..base import DEFAULT_MESSAGE_SIZE_LIMIT, LayerConfigError, LayerCore, PerLoop, non_local_name
from . import broker_ops
from .config import parse_broker_config
from .names import BrokerNames
from .session import Session, Shared


class RabbitMQChannelLayer(LayerCore):
    """A Django Channels layer on RabbitMQ (pika), for ``CHANNEL_LAYERS["default"]["BACKEND"]``.

    CONFIG: ``url`` (``amqp://``, or ``amqps://`` for TLS: pika's default context checks the
    broker's certificate, so a private authority goes in ``SSL_CERT_FILE`` or pika's
    ``ssl_options`` URL argument) or ``urls`` (cluster nodes, tried in turn),
    ``prefix``, ``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``,
    ``symmetric_encryption_keys``, ``message_size_limit``, ``timeout`` (seconds a call may
    wait for an unreachable broker before BrokerUnavailable), ``heartbeat``.
    """

    def __init__(self, url=None, urls=None, prefix="asgi", expiry=60, group_expiry=86400,
                 capacity=100, channel_capacity=None, symmetric_encryption_keys=None,
                 message_size_limit=DEFAULT_MESSAGE_SIZE_LIMIT, timeout=15.0, heartbeat=10, **unknown):
        if unknown:
            raise LayerConfigError(
                f"RabbitMQChannelLayer got unknown config key(s) {sorted(unknown)}; it takes url, urls, "
                "prefix, expiry, group_expiry, capacity, channel_capacity, symmetric_encryption_keys, "
                "message_size_limit, timeout, heartbeat")
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity,
                         channel_capacity=channel_capacity, message_size_limit=message_size_limit,
                         symmetric_encryption_keys=symmetric_encryption_keys)
        self.broker_config = parse_broker_config(url=url, urls=urls, prefix=prefix, timeout=timeout,
                                                 heartbeat=heartbeat)
        self.prefix = prefix
        self._names = BrokerNames(prefix)
        self._shared = Shared(self.broker_config, self._names, self.capacities.for_channel, self.expiry,
                              f"asgi-layer {prefix} {self.client_prefix}")
        self._sessions: PerLoop[Session] = PerLoop(lambda loop: Session(self._shared, loop), Session.close)
        self._own_queues: set[str] = set()  # this instance's process queues, deleted by close()

    @property
    def broker_url(self) -> str | None:
        """The URL of the node this instance is connected to now (None while not connected)."""
        return self._shared.active_url if self._shared.sessions_open else None

    async def new_channel(self, prefix: str = "specific") -> str:
        name = self.namer.new_channel(prefix)
        self._own_queues.add(self._names.queue(non_local_name(name)))  # deleted again by close()
        return name

    async def _send(self, channel: str, data: bytes) -> None:
        await broker_ops.send(self._sessions.current(), channel, data)

    async def _receive(self, channel: str) -> bytes:
        return await self._sessions.current().receiver.receive(channel)

    async def _group_add(self, group: str, channel: str) -> None:
        await broker_ops.group_add(self._sessions.current(), group, channel, self.group_expiry)

    async def _group_discard(self, group: str, channel: str) -> None:
        await broker_ops.group_discard(self._sessions.current(), group, channel)

    async def _group_send(self, group: str, data: bytes) -> None:
        await broker_ops.group_send(self._sessions.current(), group, data)

    async def _flush(self) -> None:
        await broker_ops.flush(self._sessions.current())

    async def _close(self) -> None:
        """Delete this instance's process queues and memberships, close its connections."""
        session = self._sessions.existing()
        memberships = self._shared.memberships  # what this instance added and did not discard
        mine = [key for key in memberships if self._names.queue(key[1]) in self._own_queues]
        for key in mine:
            del memberships[key]  # deleted with their queues: never to be added again
        own = sorted(self._names.membership(group, channel) for group, channel in mine) + sorted(self._own_queues)
        if own and session is not None and session.link is not None and session.link.open:
            try:
                for queue in own:
                    await broker_ops.delete_queue(session, queue)
            except ConnectionError:
                pass  # broker gone: its queues expire on their own (x-expires)
        current = asyncio.get_running_loop()
        for loop, each in self._sessions.pop_all():
            if loop is current:
                await each.close()
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(lambda each=each: asyncio.ensure_future(each.close()))
                except RuntimeError:
                    pass  # that loop closed meanwhile: its connection went with it
