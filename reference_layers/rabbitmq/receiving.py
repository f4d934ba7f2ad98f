"""Dispatcher: hands broker deliveries to waiting ``receive()`` calls, on the link thread.

A queue has a consumer only while some receive waits on it, with a prefetch of one, so
messages nobody is waiting for stay *ready* in the broker, where they count against the
queue's length limit (RabbitMQ does not count unacknowledged messages).

Normal channel: a delivery is acked only once a receive has taken it; if that receive was
cancelled meanwhile, it is nacked back to the head of the queue (CHAN-8: nothing lost).

Process-specific channels ``p!a``, ``p!b`` share the queue of ``p!`` (shared capacity); the
owner acks each delivery into a small local buffer per full channel name and serves receives
from there, as channels_redis does, so a quiet ``p!b`` is never stuck behind ``p!a``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import pika.exceptions as px

from ..base import is_process_specific
from .names import BrokerNames

log = logging.getLogger(__name__)
CHANNEL_HEADER = "asgi-channel"  # full channel name of a message in a shared process queue
SENDER_HEADER = "asgi-sender"  # which instance sent a control notice
FLUSH_NOTICE = b"flush"


class Waiter:
    """One pending ``receive(channel)``: its future lives on the caller's event loop."""

    __slots__ = ("channel", "queue", "future", "loop")

    def __init__(self, channel: str, queue: str, loop: asyncio.AbstractEventLoop):
        self.channel = channel
        self.queue = queue
        self.loop = loop
        self.future = loop.create_future()


class Dispatcher:
    """Consumer bookkeeping for one link. Every method runs on the link thread."""

    def __init__(self, link, names: BrokerNames, ensure_queue, expiry: float, instance_id: str):
        self._link = link
        self._instance_id = instance_id
        self._control_queue = None
        self._names = names
        self._ensure_queue = ensure_queue  # (queue, channel) -> None: declares it if needed
        self._expiry = expiry
        self._waiters: dict[str, collections.deque[Waiter]] = {}
        self._queues: dict[str, set[str]] = {}  # queue -> channels with waiters on it
        self._consumers: dict[str, str] = {}  # queue -> consumer tag
        self._tag_queue: dict[str, str] = {}
        self._inbox: collections.deque = collections.deque()
        self._buffers: dict[str, collections.deque[tuple[float, bytes]]] = {}
        self._channel = None  # pika channel for consumers, separate so publish errors spare it
        self.on_flushed = lambda: None  # set by the layer: forget remembered declarations

    # --- link hooks ----------------------------------------------------------------------------
    def wants_connection(self) -> bool:
        return bool(self._waiters)

    def on_connect(self, link) -> None:
        self._inbox.clear()
        self._consumers.clear()
        self._tag_queue.clear()
        # A private queue for flush notices, on the same consumer channel as the data: a
        # notice published before a flush returns reaches us before any later message does.
        self._control_queue = link.ops.queue_declare("", exclusive=True, auto_delete=True).method.queue
        link.ops.queue_bind(self._control_queue, self._names.control_exchange)
        self._open_channel()
        for queue in list(self._queues):
            self._sync_consumer(queue)

    def on_down(self, exc: BaseException) -> None:
        """The broker stayed unreachable past the timeout: waiting receives raise it."""
        waiters = [w for queue in self._waiters.values() for w in queue]
        self._waiters.clear()
        self._queues.clear()
        self._consumers.clear()
        self._channel = None
        for waiter in waiters:
            _call_in_loop(waiter, _fail, waiter, exc)

    def on_pass(self) -> None:
        while self._inbox:
            self._handle(*self._inbox.popleft())

    # --- waiters -------------------------------------------------------------------------------
    def add_waiter(self, waiter: Waiter) -> None:
        self._waiters.setdefault(waiter.channel, collections.deque()).append(waiter)
        self._queues.setdefault(waiter.queue, set()).add(waiter.channel)
        if self._feed_from_buffer(waiter.channel):
            return
        self._sync_consumer(waiter.queue)

    def drop_waiter(self, waiter: Waiter) -> None:
        waiters = self._waiters.get(waiter.channel)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            self._forget_if_idle(waiter.channel, waiter.queue)
        self._sync_consumer(waiter.queue)

    def _forget_if_idle(self, channel: str, queue: str) -> None:
        if not self._waiters.get(channel):
            self._waiters.pop(channel, None)
            channels = self._queues.get(queue)
            if channels is not None:
                channels.discard(channel)
                if not channels:
                    del self._queues[queue]

    def _next_waiter(self, channel: str) -> Waiter | None:
        waiters = self._waiters.get(channel)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.future.done() and not waiter.loop.is_closed():
                self._forget_if_idle(channel, waiter.queue)
                return waiter
        if waiters is not None:
            self._forget_if_idle(channel, self._names.queue(channel))
        return None

    def clear_buffers(self) -> None:
        """flush(): messages already taken from the broker are dropped too."""
        self._buffers.clear()

    # --- consumers -----------------------------------------------------------------------------
    def _open_channel(self) -> None:
        self._channel = self._link.connection.channel()
        self._channel.basic_qos(prefetch_count=1)
        self._channel.add_on_cancel_callback(self._on_cancelled_by_broker)
        self._channel.basic_consume(self._control_queue, self._on_control, auto_ack=True)

    def _sync_consumer(self, queue: str, force: bool = False) -> None:
        """A consumer on ``queue`` exactly while some receive waits on it."""
        if self._link.connection is None:
            return  # consumers are set up again on (re)connect
        wanted = queue in self._queues
        tag = self._consumers.get(queue)
        if wanted and tag is None:
            for attempt in range(3):
                channel = next(iter(self._queues[queue]))
                # Declared again when it failed, or when asked to: a flush elsewhere may have
                # deleted a queue this connection still remembers declaring.
                self._ensure_queue(queue, channel, force=force or attempt > 0)
                try:
                    tag = self._channel.basic_consume(queue, self._on_message, auto_ack=False)
                except px.ChannelClosedByBroker:  # the queue vanished (a flush) between the two
                    self._reset_channel()
                    continue
                self._consumers[queue] = tag
                self._tag_queue[tag] = queue
                return
        elif not wanted and tag is not None:
            del self._consumers[queue]
            self._tag_queue.pop(tag, None)  # late deliveries for it are nacked back
            self._channel.basic_cancel(tag)

    def _reset_channel(self) -> None:
        self._consumers.clear()
        self._tag_queue.clear()
        try:
            if self._channel is not None and self._channel.is_open:
                self._channel.close()
        except px.AMQPError:
            pass
        self._open_channel()

    def _on_message(self, channel, method, properties, body) -> None:
        self._inbox.append(("message", self._link.generation, method, properties, body))

    def _on_control(self, channel, method, properties, body) -> None:
        sender = (properties.headers or {}).get(SENDER_HEADER)
        if isinstance(sender, bytes):
            sender = sender.decode()
        if body == FLUSH_NOTICE and sender != self._instance_id:
            self._inbox.append(("flushed", self._link.generation, None, None, None))

    def _on_cancelled_by_broker(self, frame) -> None:
        self._inbox.append(("cancelled", self._link.generation, frame.method.consumer_tag, None, None))

    def _handle(self, kind, generation, method, properties, body) -> None:
        if generation != self._link.generation:
            return  # from a connection that is gone; the broker requeued it
        if kind == "flushed":
            self.clear_buffers()
            self.on_flushed()
            return
        if kind == "cancelled":  # the queue was deleted (flush): declare it again if wanted
            queue = self._tag_queue.pop(method, None)
            if queue is not None and self._consumers.get(queue) == method:
                del self._consumers[queue]
                self._sync_consumer(queue, force=True)
            return
        queue = self._tag_queue.get(method.consumer_tag)
        if queue is None:
            self._channel.basic_nack(method.delivery_tag, requeue=True)
            return
        channel = self._target_channel(queue, properties)
        if channel is None:  # not ours to read: drop it rather than loop on it
            self._channel.basic_ack(method.delivery_tag)
            return
        if is_process_specific(channel):
            self._channel.basic_ack(method.delivery_tag)
            self._buffers.setdefault(channel, collections.deque()).append((time.monotonic() + self._expiry, body))
            self._feed_from_buffer(channel)
            self._sync_consumer(queue)
            return
        waiter = self._next_waiter(channel)
        token = ("broker", self._link.generation, method.delivery_tag)
        if waiter is None:
            self._channel.basic_nack(method.delivery_tag, requeue=True)
        else:
            self._hand(waiter, body, token)
        self._sync_consumer(queue)

    def _target_channel(self, queue: str, properties) -> str | None:
        headers = properties.headers or {}
        channel = headers.get(CHANNEL_HEADER)
        if isinstance(channel, bytes):
            channel = channel.decode()
        if channel:
            return channel
        deaths = headers.get("x-death")
        if deaths:  # a group copy forwarded by a membership queue
            origin = deaths[0].get("queue")
            if isinstance(origin, bytes):
                origin = origin.decode()
            return self._names.member_of(origin or "")
        return queue[len(self._names.prefix) + 3:]  # a normal channel's own queue

    # --- hand-over to the waiting coroutine ----------------------------------------------------
    def _feed_from_buffer(self, channel: str) -> bool:
        buffer = self._buffers.get(channel)
        handed = False
        now = time.monotonic()
        while buffer:
            while buffer and buffer[0][0] <= now:
                buffer.popleft()  # expired while buffered
            if not buffer:
                break
            waiter = self._next_waiter(channel)
            if waiter is None:
                break
            self._hand(waiter, buffer.popleft()[1], ("buffer", channel))
            handed = True
        if buffer is not None and not buffer:
            del self._buffers[channel]
        return handed

    def _hand(self, waiter: Waiter, body: bytes, token) -> None:
        if not _call_in_loop(waiter, self._complete, waiter, body, token):
            self.give_back(body, token)

    def _complete(self, waiter: Waiter, body: bytes, token) -> None:
        """On the waiter's loop: offer the message; if that receive is gone, return it.

        The receive acks it (``settle``) only once its coroutine really resumes with it: a
        task cancelled after its future got a result never sees that result, and gives it back.
        """
        if waiter.future.done():
            self._link.post(lambda: self.give_back(body, token))
        else:
            waiter.future.set_result((body, token))

    def settle(self, token) -> None:
        """A receive took this message: ack it if it came from the broker unacked."""
        if token[0] != "broker":
            return
        _, generation, tag = token
        if generation == self._link.generation and self._channel is not None:
            self._channel.basic_ack(tag)

    def give_back(self, body: bytes, token) -> None:
        if token[0] == "buffer":
            channel = token[1]
            self._buffers.setdefault(channel, collections.deque()).appendleft((time.monotonic() + self._expiry, body))
            self._feed_from_buffer(channel)
            return
        _, generation, tag = token
        if generation == self._link.generation and self._channel is not None:
            self._channel.basic_nack(tag, requeue=True)  # back to the head of its queue


def _call_in_loop(waiter: Waiter, fn, *args) -> bool:
    try:
        waiter.loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # that event loop is closed: nobody is waiting there any more
        return False
    return True


def _fail(waiter: Waiter, exc: BaseException) -> None:
    if not waiter.future.done():
        waiter.future.set_exception(exc)
