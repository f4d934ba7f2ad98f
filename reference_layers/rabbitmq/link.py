"""Link: one AMQP connection (pika ``AsyncioConnection``) living on one event loop.

Everything is driven by pika's callbacks on the loop that owns the link, and every call
returns an asyncio future resolved straight from those callbacks: no thread, no hand-off.
A link has three AMQP channels, each with one job, so that a broker error on one (a 404 on
a queue a flush just deleted, a 406 on a queue declared with other limits) never takes
another's state with it:

- ``publish``: publisher confirms on (confirms.py). It only ever publishes to the default
  exchange and ``amq.direct``, which cannot be missing, so the broker never closes it.
- ``consume``: consumers and their acks (see receiving.py).
- ``admin``: declares, binds, deletes, gets; reopened after a broker error, which fails
  only the command that caused it.

A lost connection fails what is in flight with :class:`BrokerUnavailable` (a publish may or
may not have reached the broker: broker_ops.py publishes it again with the same message id,
dedupe.py drops a second copy) and tells the owner, which reconnects (session.py).

Every wait with a time limit goes through :func:`futures.within`, never ``asyncio.wait_for``
(see futures.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable, NamedTuple

import pika.exceptions as px
from pika import spec
from pika.adapters.asyncio_connection import AsyncioConnection

from .config import BrokerConfig
from .confirms import Confirms, PublishOutcome
from .errors import BrokerRefused, BrokerUnavailable, safe_url
from .futures import settle, within
from .pika_compat import coalesce_writes, drop_stream, quiet_expected_refusals, write_soon

log = logging.getLogger(__name__)

# Deliveries the broker may push to one consumer before we ack. One: the broker must push no
# more than receives wait for (capacity counts only ready messages); fan-out uses more consumers.
PREFETCH = 1  # per consumer: receiving.py keeps one open window per waiting receive


class Got(NamedTuple):
    """A message taken with basic.get."""

    body: bytes
    properties: Any  # pika.BasicProperties
    delivery_tag: int


class Link:
    def __init__(self, loop: asyncio.AbstractEventLoop, config: BrokerConfig, name: str, url: str):
        self.loop = loop
        self.config = config
        self.url = url
        self._name = name
        self.connection: Any = None  # a pika AsyncioConnection once connect() began
        # pika Channels (untyped); each None until opened
        self.publish_channel: Any = None
        self.consume_channel: Any = None
        self.admin_channel: Any = None
        self.open = False
        self.on_lost: Callable[[BaseException], None] = lambda exc: None
        self.on_consume_channel: Callable[[], None] = lambda: None  # consume channel (re)opened
        self.on_consumer_cancelled: Callable[[str], None] = lambda tag: None  # by the broker
        self._closing = False
        self._confirms = Confirms(loop, config.timeout, self._lose)
        self._admin_queue: collections.deque[asyncio.Future[Any]] = collections.deque()  # in send order
        self._get_lock = asyncio.Lock()
        self._get_future: asyncio.Future[Got | None] | None = None
        self._get_on_reply: Callable[[], None] | None = None  # called as the reply is read
        self._get_sent: tuple[str, bool] = ("", False)  # the get in flight: queue, auto-ack
        self._get_behind: list[asyncio.Future[Any]] = []  # admin commands sent before it, unanswered then
        self._opening: set[asyncio.Future[Any]] = set()  # replies connect() waits for (channel.open-ok...)
        self.admin_ready = asyncio.Event()
        self.consume_ready = asyncio.Event()
        # Sends what this turn buffered at once, not at the start of the next turn: for a frame
        # the broker should act on while this turn's other callbacks (woken receives) run.
        self.send_now: Callable[[], None] = lambda: None

    # --- opening -------------------------------------------------------------------------------
    async def connect(self, timeout: float) -> None:
        opened = self.loop.create_future()

        def on_open(connection):
            settle(opened, result=connection)

        def on_open_error(connection, exc):
            settle(opened, exc=exc if isinstance(exc, BaseException) else px.AMQPConnectionError(exc))

        self.connection = AsyncioConnection(self.config.connection_parameters(self.url, self._name), on_open_callback=on_open,
                                            on_open_error_callback=on_open_error,
                                            on_close_callback=self._on_connection_closed,
                                            custom_ioloop=self.loop)
        try:
            await within(opened, timeout)
            coalesce_writes(self.connection)
            self.send_now = write_soon(self.connection, self.loop)
            self.publish_channel = await self._open_channel()
            confirmed = self.loop.create_future()
            self.publish_channel.confirm_delivery(self._confirms.on_confirm,
                                                  callback=lambda frame: settle(confirmed, result=None))
            self.publish_channel.add_on_return_callback(self._confirms.on_return)
            await self._opened(confirmed)
            await self._open_admin()
            await self.open_consume_channel()
        except BaseException:
            self.abort()
            raise
        self.open = True

    async def _open_channel(self):
        opened = self.loop.create_future()
        channel = self.connection.channel(on_open_callback=lambda ch: settle(opened, result=ch))
        channel.add_on_close_callback(self._on_channel_closed)
        return await self._opened(opened)

    async def _opened(self, reply: asyncio.Future[Any]) -> Any:
        """Wait for a reply while channels open: a connection lost meanwhile fails it at once
        (``_fail_all``) rather than at the timeout, so the next attempt starts now."""
        self._opening.add(reply)
        try:
            return await within(reply, self.config.timeout)
        finally:
            self._opening.discard(reply)

    async def _open_admin(self) -> None:
        self.admin_channel = await self._open_channel()
        quiet_expected_refusals(self.admin_channel)  # raised as BrokerRefused: handled, not logged
        self.admin_channel.add_callback(self._on_get_empty, [spec.Basic.GetEmpty], one_shot=False)
        self.admin_ready.set()

    async def open_consume_channel(self) -> None:
        channel = await self._open_channel()
        channel.add_on_cancel_callback(lambda frame: self.on_consumer_cancelled(frame.method.consumer_tag))
        done = self.loop.create_future()
        channel.basic_qos(prefetch_count=PREFETCH, callback=lambda frame: settle(done, result=None))
        await self._opened(done)
        self.consume_channel = channel
        self.consume_ready.set()

    # --- publishing ----------------------------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any = None,
                mandatory: bool = False) -> asyncio.Future[PublishOutcome]:
        """Publish; the future gives the broker's :class:`PublishOutcome`."""
        if not self.open:
            raise BrokerUnavailable("the connection to RabbitMQ is closed")
        future = self._confirms.expect(routing_key if mandatory else None)
        self.publish_channel.basic_publish(exchange, routing_key, body, properties, mandatory)
        return future

    # --- admin commands ------------------------------------------------------------------------
    async def admin(self, method: str, *args, **kwargs):
        """Run an admin RPC (``queue_declare`` ...) and return its reply frame's method.

        A broker refusal raises BrokerRefused and reopens the admin channel; commands queued
        behind the one that caused it are sent again on the new channel, however many refusals
        come before their turn (statistics() asks about every queue a prefix registered, and each
        one deleted since is refused): each resend follows the refusal of a command ahead of it,
        so the commands ahead run out.
        """
        while True:
            await self._ready(self.admin_ready)
            future: asyncio.Future[Any] = self.loop.create_future()
            self._admin_queue.append(future)

            def reply(frame: Any, future: asyncio.Future[Any] = future) -> None:
                if future in self._admin_queue:
                    self._admin_queue.remove(future)
                settle(future, result=frame.method)

            getattr(self.admin_channel, method)(*args, callback=reply, **kwargs)
            try:
                return await within(future, self.config.timeout)
            except _Resend:
                continue
            except asyncio.TimeoutError:
                raise BrokerUnavailable(f"RabbitMQ did not answer {method} within {self.config.timeout:g} s") from None

    async def get(self, queue: str) -> Got | None:
        """basic.get with auto-ack: the message, or None if the queue is empty."""
        return await self.got(await self.begin_get(queue))

    async def begin_get(self, queue: str, on_reply: Callable[[], None] | None = None) -> asyncio.Future[Got | None]:
        """Send basic.get (auto-ack) now, holding the one get a channel may have in flight;
        ``got()`` waits for the reply and lets the next get go. Split so that a caller can put
        the get on the wire in its own turn and wait for the reply elsewhere (process_groups.py).
        ``on_reply`` is called as the reply is read, its future done by then: in that very
        callback, not a turn of the loop later as a done-callback would be."""
        await self._get_lock.acquire()
        try:
            await self._ready(self.admin_ready)
            return self._send_get(queue, auto_ack=True, on_reply=on_reply)
        except BaseException:
            self._get_lock.release()
            raise

    def can_get_now(self) -> bool:
        """A get would go out at once: the link is open, its admin channel ready, no get in flight."""
        return self.open and self.admin_ready.is_set() and not self._get_lock.locked()

    def release_get(self) -> None:
        """Let the next get go without waiting for the reply to the one ``begin_get`` sent."""
        if self._get_future is not None:
            settle(self._get_future, result=None)
        self._get_future = None
        self._get_lock.release()

    async def got(self, sent: asyncio.Future[Got | None]) -> Got | None:
        """The reply to the get ``begin_get`` sent."""
        try:
            return await self._reply(sent)
        finally:
            self._get_lock.release()

    async def peek_all(self, queue: str) -> list[bytes]:
        """Every message body in ``queue``, left in it: got without ack, then requeued."""
        bodies: list[bytes] = []
        async with self._get_lock:
            await self._ready(self.admin_ready)
            carrier, last = self.admin_channel, None
            try:
                while (got := await self._get(queue, auto_ack=False)) is not None:
                    bodies.append(got.body)
                    last = got.delivery_tag
            finally:
                # A reopened admin channel knows none of these tags: the broker requeued them
                # when the old one closed.
                if last is not None and carrier is self.admin_channel and carrier.is_open:
                    carrier.basic_nack(delivery_tag=last, multiple=True, requeue=True)
        return bodies

    async def _get(self, queue: str, auto_ack: bool) -> Got | None:
        await self._ready(self.admin_ready)
        return await self._reply(self._send_get(queue, auto_ack))

    def _send_get(self, queue: str, auto_ack: bool, on_reply: Callable[[], None] | None = None) -> asyncio.Future[Got | None]:
        future: asyncio.Future[Got | None] = self.loop.create_future()
        self._get_future, self._get_on_reply = future, on_reply
        self._get_sent, self._get_behind = (queue, auto_ack), list(self._admin_queue)

        def got(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            settle(future, result=Got(body, properties, method.delivery_tag))
            if on_reply is not None:
                on_reply()

        self.admin_channel.basic_get(queue, got, auto_ack=auto_ack)
        return future

    async def _reply(self, future: asyncio.Future[Got | None]) -> Got | None:
        try:
            while True:
                try:
                    return await within(future, self.config.timeout)
                except _Resend:  # a command ahead of it was refused: the broker dropped it unseen
                    queue, auto_ack = self._get_sent
                    await self._ready(self.admin_ready)
                    future = self._send_get(queue, auto_ack)
        except asyncio.TimeoutError:
            raise BrokerUnavailable(f"RabbitMQ did not answer basic.get within {self.config.timeout:g} s") from None
        finally:
            if self._get_future is future:
                self._get_future = None

    async def _ready(self, event: asyncio.Event) -> None:
        """Wait for a channel that is being reopened; fail if the connection is gone."""
        if not self.open:
            raise BrokerUnavailable("the connection to RabbitMQ is closed")
        if not event.is_set():
            try:
                await within(event.wait(), self.config.timeout)
            except asyncio.TimeoutError:
                raise BrokerUnavailable("an AMQP channel could not be reopened in time") from None
            if not self.open:
                raise BrokerUnavailable("the connection to RabbitMQ is closed")

    async def consume_channel_ready(self):
        await self._ready(self.consume_ready)
        return self.consume_channel

    def _on_get_empty(self, frame) -> None:
        if self._get_future is not None:
            settle(self._get_future, result=None)
            if self._get_on_reply is not None:
                self._get_on_reply()

    # --- closing and losing ----------------------------------------------------------------------
    def _on_channel_closed(self, channel, exc) -> None:
        if not self.open or self._closing:
            return
        if channel is self.admin_channel:
            # The broker ran the channel's commands in order: the first still unanswered was
            # refused, and it dropped every one after it unseen (those go again on the new channel).
            rest, get = list(self._admin_queue), self._get_future
            self._admin_queue.clear()
            get_refused = get is not None and not (rest and any(rest[0] is ahead for ahead in self._get_behind))
            if rest and not get_refused:
                code = getattr(exc, "reply_code", 0)
                settle(rest.pop(0), exc=BrokerRefused(code, getattr(exc, "reply_text", str(exc))))
            for entry in rest:
                settle(entry, exc=_Resend())
            if get is not None:  # again too, unless refused itself or a peek (what it took came back)
                again = not get_refused and self._get_sent[1]
                settle(get, exc=_Resend() if again else BrokerUnavailable(f"basic.get failed: {exc!r}"))
            self.admin_ready.clear()
            self.loop.create_task(self._reopen(self._open_admin))
        elif channel is self.consume_channel:
            self.consume_channel = None
            self.consume_ready.clear()
            self.loop.create_task(self._reopen(self._reopen_consume))
        elif channel is self.publish_channel:
            self._lose(BrokerUnavailable(f"the publishing channel closed: {exc!r}"))

    async def _reopen_consume(self) -> None:
        await self.open_consume_channel()
        self.on_consume_channel()

    async def _reopen(self, opener) -> None:
        try:
            await opener()
        except Exception as exc:  # noqa: BLE001 - the connection itself is going: handled there
            self._lose(BrokerUnavailable(f"could not reopen an AMQP channel: {exc!r}"))

    def _on_connection_closed(self, connection, exc) -> None:
        if self._closing:
            return
        self._lose(exc)

    def _lose(self, exc: BaseException) -> None:
        was_open, self.open = self.open, False
        failure = exc if isinstance(exc, BrokerUnavailable) else BrokerUnavailable(
            f"the connection to RabbitMQ at {safe_url(self.url)} broke ({exc!r}); a call in flight "
            "may or may not have taken effect")
        self._fail_all(failure)
        self.abort()
        if was_open:
            log.warning("rabbitmq layer lost its connection to %s: %r", safe_url(self.url), exc)
            self.on_lost(failure)

    def _fail_all(self, failure: BaseException) -> None:
        self.admin_ready.set()  # wake anyone waiting for a channel: they see the link is closed
        self.consume_ready.set()
        self._confirms.fail_all(failure)
        for reply in list(self._opening):
            settle(reply, exc=failure)
        admin, self._admin_queue = self._admin_queue, collections.deque()
        for entry in admin:
            settle(entry, exc=failure)
        if self._get_future is not None:
            settle(self._get_future, exc=failure)

    def abort(self) -> None:
        """Drop the connection without the closing handshake (it is broken or unwanted)."""
        self._closing = True
        self.open = False
        connection = self.connection
        if connection is not None and not (connection.is_closed or connection.is_closing):
            try:
                connection.close()  # also aborts a connection still opening
            except Exception:  # noqa: BLE001 - already closing or broken
                pass

    async def close(self) -> None:
        """Close with the AMQP handshake (the broker requeues what we had not acked)."""
        self._closing = True
        was_open, self.open = self.open, False
        self._fail_all(BrokerUnavailable("the layer's connection was closed while this call waited"))
        connection = self.connection
        if connection is None or connection.is_closed:
            return
        closed = self.loop.create_future()
        connection.add_on_close_callback(lambda conn, exc: settle(closed, result=None))
        try:
            if was_open and connection.is_open:
                connection.close()
                await within(closed, min(5.0, self.config.timeout))
            else:
                self.abort()
        except Exception:  # noqa: BLE001 - closing must not fail: drop the socket instead
            drop_stream(connection)


class _Resend(Exception):
    """An admin command was queued behind one the broker refused: send it again."""
