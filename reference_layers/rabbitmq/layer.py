"""RabbitMQChannelLayer: the public layer, glue between LayerCore and the link thread."""

from __future__ import annotations

import asyncio
import time

from ..base import DEFAULT_MESSAGE_SIZE_LIMIT, LayerConfigError, LayerCore, non_local_name
from .broker_ops import BrokerOps
from .config import parse_broker_config
from .link import BrokerLink
from .names import BrokerNames
from .receiving import Dispatcher, Waiter


class RabbitMQChannelLayer(LayerCore):
    """A Django Channels layer on RabbitMQ (pika), for ``CHANNEL_LAYERS["default"]["BACKEND"]``.

    CONFIG: ``url`` (``amqp://`` or ``amqps://``) or ``urls`` (cluster nodes, tried in turn),
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
        self._own_queues: set[str] = set()  # this instance's process queues, deleted by close()
        self._own_memberships: set[str] = set()  # their group memberships, deleted with them
        self._link = BrokerLink(self.broker_config, f"asgi-layer {prefix} {self.client_prefix}")
        self._ops = BrokerOps(self._link, self._names, self.capacities.for_channel, self.expiry, self.group_expiry)
        self._dispatcher = Dispatcher(self._link, self._names, self._ops.ensure_queue, self.expiry, self.client_prefix)
        self._dispatcher.on_flushed = self._ops.forget_declarations
        self._link.on_connect = self._on_connect
        self._link.on_pass = self._dispatcher.on_pass
        self._link.on_down = self._dispatcher.on_down
        self._link.wants_connection = self._dispatcher.wants_connection

    def _on_connect(self, link) -> None:
        self._ops.on_connect(link)
        self._dispatcher.on_connect(link)

    async def _call(self, fn, repeatable=True):
        return await asyncio.wrap_future(self._link.call(fn, repeatable))

    async def new_channel(self, prefix: str = "specific") -> str:
        name = self.namer.new_channel(prefix)
        self._own_queues.add(self._names.queue(non_local_name(name)))  # deleted again by close()
        return name

    async def _send(self, channel: str, data: bytes) -> None:
        called_at = time.monotonic()
        await self._call(lambda link: self._ops.send(channel, data, called_at), repeatable=False)

    async def _receive(self, channel: str) -> bytes:
        loop = asyncio.get_running_loop()
        waiter = Waiter(channel, self._names.queue(channel), loop)
        listed = self._link.call(lambda link: self._dispatcher.add_waiter(waiter))
        listed.add_done_callback(lambda done: _fail_waiter_if(done, waiter))
        try:
            body, token = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                body, token = waiter.future.result()  # handed over, but we were cancelled first
                self._link.post(lambda: self._dispatcher.give_back(body, token))
            else:
                self._link.post(lambda: self._dispatcher.drop_waiter(waiter))
            raise
        self._link.post(lambda: self._dispatcher.settle(token))
        return body

    @property
    def broker_url(self) -> str | None:
        """The URL of the node this instance is connected to now (None before the first call)."""
        return self._link.active_url if self._link.connection is not None else None

    async def _group_add(self, group: str, channel: str) -> None:
        if self._names.queue(channel) in self._own_queues:
            self._own_memberships.add(self._names.membership(group, channel))
        await self._call(lambda link: self._ops.group_add(group, channel))

    async def _group_discard(self, group: str, channel: str) -> None:
        await self._call(lambda link: self._ops.group_discard(group, channel))

    async def _group_send(self, group: str, data: bytes) -> None:
        called_at = time.monotonic()
        await self._call(lambda link: self._ops.group_send(group, data, called_at), repeatable=False)

    async def _flush(self) -> None:
        def flush(link):
            self._ops.flush(self.client_prefix)
            self._dispatcher.clear_buffers()

        await self._call(flush)

    async def _close(self) -> None:
        """Delete this instance's process queues, close the connection, end the link thread."""
        own = sorted(self._own_memberships) + sorted(self._own_queues)
        self._own_queues.clear()
        self._own_memberships.clear()
        if own and self._link.connection is not None:
            def delete_own(link):
                for queue in own:
                    self._ops.delete_queue(queue)

            try:
                await self._call(delete_own)
            except ConnectionError:
                pass  # broker gone: its queues expire on their own (x-expires)
        await asyncio.wrap_future(self._link.stop())


def _fail_waiter_if(done, waiter: Waiter) -> None:
    exc = done.exception() if not done.cancelled() else None
    if exc is not None:
        try:
            waiter.loop.call_soon_threadsafe(_set_exception, waiter, exc)
        except RuntimeError:
            pass


def _set_exception(waiter: Waiter, exc: BaseException) -> None:
    if not waiter.future.done():
        waiter.future.set_exception(exc)
