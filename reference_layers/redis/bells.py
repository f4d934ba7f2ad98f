"""Bells: how a waiting receive hears of a push made by any process.

Every push (SEND, GROUP_SEND, PUSH_BACK) PUBLISHes the new message id on the capacity key's
bell. Each shard has one subscriber connection per event loop, subscribed to the bells of
the capacity keys this process receives on; a ring calls the key's listener (a Receiver),
which pops. Why pub/sub and not a blocking read: a subscription is made once and stays, so
waiting costs no command per wait, and a ring reaches the receiver in one hop.

Race-free by order: a receiver pops only after its bell's subscription is confirmed, so any
push after that pop rings it. When the connection drops, every subscription is gone: all
listeners are rung so their receivers subscribe again (reconnecting) and pop.

A channel can be taken whole instead (``take``): what is published on it goes as it is to its
taker, a loop's deliveries of group copies (deliveries.py).

Subscriptions outlive receivers (a receive loop on one channel would otherwise subscribe and
unsubscribe on every call); the least recently used beyond ``SUBSCRIPTION_LIMIT`` are dropped.

In a Redis Cluster the bells are sharded channels (``sharded=True``: SSUBSCRIBE on the node that
holds the bell's slot, see cluster_node.py); a node that stops serving the slot unsubscribes us
itself, which counts as a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from typing import Callable, Optional

from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from .reconnect import Reconnector
from .wire import ReplyReader, pack, take_over_socket

SUBSCRIPTION_LIMIT = 1000
Listener = Callable[[int], None]  # called with the id a push published
Taker = Callable[[Optional[bytes]], None]  # called with what was published whole (None: subscription lost)


class BellWire(asyncio.Protocol):
    """A connection in subscribe mode: rings go to ``on_ring``, confirmations to futures in order."""

    def __init__(self, on_ring: Callable[[bytes, bytes], None], on_lost: Callable[["BellWire"], None],
                 sharded: bool = False):
        self._on_ring = on_ring
        self._ring_kind = b"smessage" if sharded else b"message"
        self._sharded = sharded
        self._on_lost = on_lost
        self._reader = ReplyReader()
        self._confirmations: deque[asyncio.Future] = deque()
        # Set by connection_made, which asyncio calls before the protocol is handed out.
        self._transport: asyncio.Transport
        self.streams = ()
        self.closed = False

    def command(self, *args) -> asyncio.Future:
        """Send (UN)SUBSCRIBE of one channel; the future gets its confirmation."""
        future = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("bell connection to Redis lost"))
            return future
        self._confirmations.append(future)
        self._transport.write(pack(*args))
        return future

    def close(self) -> None:
        if not self.closed:
            self._transport.close()
            self._lost()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except Exception:  # noqa: BLE001 - an unreadable stream: this socket is unusable
                self._transport.abort()
                self._lost()
                return
            if reply is False:
                return
            if isinstance(reply, list) and reply and reply[0] == self._ring_kind:
                self._on_ring(reply[1], reply[2])
            elif self._sharded and not self._confirmations and isinstance(reply, list) and reply \
                    and reply[0] == b"sunsubscribe":  # the node gave the slot away: subscribe elsewhere
                self._transport.abort()
                self._lost()
                return
            elif self._confirmations:
                future = self._confirmations.popleft()
                if not future.done():
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self._lost()

    def eof_received(self):
        return False

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        error = RedisConnectionError("bell connection to Redis lost")
        while self._confirmations:
            future = self._confirmations.popleft()
            if not future.done():
                future.set_exception(error)
        self._on_lost(self)


class Bells:
    """One shard's subscriptions on one event loop."""

    def __init__(self, pool: ConnectionPool, reconnector: Reconnector, sharded: bool = False):
        self._pool = pool
        self._sharded = sharded
        self._subscribe, self._unsubscribe = (b"SSUBSCRIBE", b"SUNSUBSCRIBE") if sharded else \
            (b"SUBSCRIBE", b"UNSUBSCRIBE")
        self._reconnector = reconnector  # shared with the shard's command connection
        self._wire: BellWire | None = None
        self._connecting = asyncio.Lock()
        self._subscribed: OrderedDict[bytes, asyncio.Future] = OrderedDict()
        self._listeners: dict[bytes, Listener] = {}
        self._takers: dict[bytes, Taker] = {}  # channels whose messages are taken whole (deliveries.py)
        self._closed = False

    def listen(self, bell: bytes, listener: Listener) -> None:
        self._listeners[bell] = listener

    def take(self, channel: bytes, taker: Taker) -> None:
        """Give what is published on ``channel`` to ``taker`` as it is, once subscribed."""
        self._takers[channel] = taker

    def stop_taking(self, channel: bytes) -> None:
        self._takers.pop(channel, None)

    def forget(self, bell: bytes, listener: Listener) -> None:
        if self._listeners.get(bell) == listener:  # bound methods: equal, never identical
            del self._listeners[bell]

    async def subscribe(self, bell: bytes) -> None:
        """Return once a push on ``bell`` is sure to ring (at once when already subscribed)."""
        confirmed = self._subscribed.get(bell)
        if confirmed is None:
            wire = self._wire
            if wire is None or wire.closed:
                wire = await self._connect()
            confirmed = self._subscribed[bell] = wire.command(self._subscribe, bell)
            self._trim()
        else:
            self._subscribed.move_to_end(bell)
        if not confirmed.done():
            await asyncio.shield(confirmed)
        elif (error := confirmed.exception()) is not None:
            if self._subscribed.get(bell) is confirmed:
                del self._subscribed[bell]
            raise error

    async def unsubscribe(self, bell: bytes) -> None:
        """Drop the subscription of ``bell`` if no listener is left on it; return once the server
        confirmed (at once if it was not subscribed, or the connection is gone with it)."""
        if bell in self._listeners or self._subscribed.pop(bell, None) is None:
            return
        await self._unsubscribe_now(bell)

    async def leave(self, channel: bytes) -> None:
        """Unsubscribe ``channel`` though its taker listens on (it gets what comes meanwhile):
        return once the server confirmed, or the connection is gone with the subscription.
        Sent even if no subscription is on record: one cancelled on its way may have reached the server."""
        self._subscribed.pop(channel, None)
        await self._unsubscribe_now(channel)

    async def _unsubscribe_now(self, channel: bytes) -> None:
        if self._wire is not None and not self._wire.closed:
            with contextlib.suppress(RedisConnectionError):
                await self._wire.command(self._unsubscribe, channel)

    def close(self) -> None:
        self._closed = True
        if self._wire is not None:
            self._wire.close()

    # --- plumbing ---------------------------------------------------------------------------
    async def _connect(self) -> BellWire:
        async with self._connecting:
            if self._closed:
                raise RuntimeError("this channel layer connection was closed")
            if self._wire is None or self._wire.closed:
                wire = await self._reconnector.open(
                    lambda: take_over_socket(self._pool, lambda: BellWire(self._ring, self._lost, self._sharded)))
                self._wire = wire
                return wire
            return self._wire

    def _ring(self, bell: bytes, message_id: bytes) -> None:
        listener = self._listeners.get(bell)
        if listener is not None:
            listener(int(message_id))
        elif (taker := self._takers.get(bell)) is not None:
            taker(message_id)

    def _lost(self, wire: BellWire) -> None:
        """Every subscription went with the connection: make every receiver subscribe and look."""
        if wire is not self._wire:
            return
        self._subscribed.clear()
        for listener in list(self._listeners.values()):
            listener(-1)
        for taker in list(self._takers.values()):
            taker(None)

    def _trim(self) -> None:
        while len(self._subscribed) > SUBSCRIPTION_LIMIT:
            for bell in self._subscribed:
                if bell not in self._listeners and bell not in self._takers:
                    break
            else:
                return  # every subscription has a receiver: keep them all
            del self._subscribed[bell]
            if self._wire is not None and not self._wire.closed:
                self._wire.command(self._unsubscribe, bell)
