"""Receiver: one loop's waiting ``receive()`` calls, the consumers that feed them, and the
rules that keep capacity exact while a consumer stays open between receives.

A consumer on a queue starts with the first receive on it and stays while receives keep
coming, so a busy channel costs no basic.consume/basic.cancel round trip per receive; it is
cancelled once no receive has waited on that queue for ``LINGER`` seconds.

RabbitMQ counts only *ready* messages against ``x-max-length``: a message delivered to us
but not yet handed to a receive ("parked", unacked) would escape the capacity. So:

- a delivery is acked only when a receive takes it (at once if one is waiting);
- a delivery nobody waits for is parked unacked; a receive on its channel takes it without
  a round trip; once the queue has had no receive for ``LINGER`` seconds the consumer is
  cancelled and parked messages are requeued to their old places (basic.nack requeue);
- before this loop sends to a queue holding parked messages (after one turn of the loop, in
  which a receive about to come back usually takes them), they are given back the same way
  and the broker is asked for a reply on that channel before the publish goes out, so the
  broker counts them when it judges that send;
- only when the prefetch window is full of messages for channels nobody waits on while a
  sibling channel waits (``p!a`` starving behind ``p!b``) are they acked into a local buffer,
  as channels_redis does.

Known limit: while a consumer is open (a receive waited on the queue in the last ``LINGER``
seconds, so always under a busy receive loop), up to ``PREFETCH`` parked deliveries are not
counted by the broker when *another process* sends to that queue: a slow consumer's queue
can hold up to capacity + PREFETCH. Sends from this process, and everything the suite checks,
see the exact capacity. Exact counting across processes would need a consumer (prefetch 1)
only while a receive waits, at one consume/cancel round trip per receive.

Process-specific channels ``p!a``, ``p!b`` share the queue of ``p!``; a message says which
of them it is for in its ``type`` property (direct sends) or, for a group copy, in the
``x-death`` header naming the membership queue that forwarded it (broker_ops.py).
"""

from __future__ import annotations

import asyncio
import collections
import time

from .link import PREFETCH, BrokerUnavailable

LINGER = 0.1  # seconds a consumer outlives the last waiting receive on its queue


class _Parked:
    __slots__ = ("channel", "body", "tag", "carrier", "arrived")

    def __init__(self, channel, body, tag, carrier, arrived):
        self.channel = channel
        self.body = body
        self.tag = tag  # delivery tag while unacked, None once acked (local buffer)
        self.carrier = carrier  # the pika channel the delivery came on
        self.arrived = arrived


class _Queue:
    """Receive-side state of one broker queue on this loop."""

    __slots__ = ("name", "waiters", "parked", "unacked", "tag", "carrier", "starting", "idle_timer")

    def __init__(self, name: str):
        self.name = name
        self.waiters: dict[str, collections.deque[asyncio.Future]] = {}
        self.parked: collections.deque[_Parked] = collections.deque()
        self.unacked = 0
        self.tag: str | None = None  # our consumer on it, if any
        self.carrier = None  # the pika channel that consumer lives on
        self.starting: asyncio.Future | None = None
        self.idle_timer: asyncio.TimerHandle | None = None

    def has_waiters(self) -> bool:
        return bool(self.waiters)

    def any_channel(self) -> str:
        return next(iter(self.waiters), None) or (self.parked[0].channel if self.parked else "")


class _StartAgain(Exception):
    """The receive that was starting a consumer went away: the next one starts it."""


class Receiver:
    def __init__(self, session):
        self.session = session
        self.loop = session.loop
        self.names = session.shared.names
        self.expiry = session.shared.expiry
        self.queues: dict[str, _Queue] = {}
        self.tags: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task] = set()

    def has_waiters(self) -> bool:
        return any(state.has_waiters() for state in self.queues.values())

    # --- receive -------------------------------------------------------------------------------
    async def receive(self, channel: str) -> bytes:
        queue = self.names.queue(channel)
        state = self.queues.get(queue)
        if state is None:
            state = self.queues[queue] = _Queue(queue)
        body = self._take_parked(state, channel)
        if body is not None:
            return body
        future = self.loop.create_future()
        state.waiters.setdefault(channel, collections.deque()).append(future)
        if state.idle_timer is not None:
            state.idle_timer.cancel()
            state.idle_timer = None
        try:
            if state.tag is None:
                await self._start(state, channel)
            return await future
        except BaseException:
            self._drop_waiter(state, channel, future)
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed over (and acked) just as this receive was cancelled: keep it for the next.
                state.parked.appendleft(_Parked(channel, future.result(), None, None, time.monotonic()))
                self._serve(state, channel)
            raise

    def _drop_waiter(self, state: _Queue, channel: str, future) -> None:
        waiters = state.waiters.get(channel)
        if waiters is not None:
            try:
                waiters.remove(future)
            except ValueError:
                pass
            if not waiters:
                del state.waiters[channel]
        self._maybe_idle(state)

    def _next_waiter(self, state: _Queue, channel: str):
        waiters = state.waiters.get(channel)
        while waiters:
            future = waiters.popleft()
            if not future.done():
                if not waiters:
                    del state.waiters[channel]
                    self._maybe_idle(state)
                return future
        if waiters is not None:
            del state.waiters[channel]
            self._maybe_idle(state)
        return None

    def _take_parked(self, state: _Queue, channel: str) -> bytes | None:
        if not state.parked:
            return None
        now = time.monotonic()
        for entry in list(state.parked):
            if entry.channel != channel:
                continue
            state.parked.remove(entry)
            fresh = now - entry.arrived < self.expiry
            if entry.tag is not None:
                state.unacked -= 1
                if not _usable(entry.carrier):
                    continue  # that channel closed: the broker has requeued it already
                entry.carrier.basic_ack(entry.tag)
            if fresh:
                return entry.body
        return None

    def _serve(self, state: _Queue, channel: str) -> None:
        """Hand parked messages of ``channel`` to its waiting receives."""
        while state.waiters.get(channel):
            body = self._take_parked(state, channel)
            if body is None:
                return
            future = self._next_waiter(state, channel)
            if future is None:
                state.parked.appendleft(_Parked(channel, body, None, None, time.monotonic()))
                return
            future.set_result(body)

    # --- consumers -----------------------------------------------------------------------------
    async def _start(self, state: _Queue, channel: str, force: bool = False) -> None:
        while state.tag is None:
            if state.starting is not None:
                try:
                    await asyncio.shield(state.starting)
                except _StartAgain:
                    continue
                continue
            starting = state.starting = self.loop.create_future()
            try:
                link = await self.session.get_link()
                await self.session.ensure_queue(state.name, channel, force=force)
                carrier = await link.consume_channel_ready()
                if state.tag is None and link.open and carrier is link.consume_channel:
                    state.tag = carrier.basic_consume(state.name, self._on_message)
                    state.carrier = carrier
                    self.tags[state.tag] = state
            except BaseException as exc:
                state.starting = None
                starting.set_exception(exc if isinstance(exc, Exception) else _StartAgain())
                starting.exception()  # retrieved: whoever waits on it sees it
                raise
            state.starting = None
            starting.set_result(None)

    def _restart(self, state: _Queue, force: bool) -> None:
        """Start the consumer again in the background for receives already waiting."""
        async def restart():
            try:
                await self._start(state, state.any_channel(), force=force)
            except BrokerUnavailable:
                pass  # the session's recovery (or the next receive) takes over
            except Exception as exc:  # noqa: BLE001 - a broker refusal: the waiting receives raise it
                self._fail(state, exc)

        task = self.loop.create_task(restart())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop_consumer(self, state: _Queue) -> None:
        """Cancel the consumer and put every parked, unacked message back in its place."""
        tag, carrier = state.tag, state.carrier
        state.tag = state.carrier = None
        if tag is not None:
            self.tags.pop(tag, None)
        usable = _usable(carrier)
        if usable and tag is not None:
            try:
                carrier.basic_cancel(tag)
            except Exception:  # noqa: BLE001 - the broker cancelled it already
                pass
        for entry in [entry for entry in state.parked if entry.tag is not None]:
            state.parked.remove(entry)
            if _usable(entry.carrier):
                entry.carrier.basic_nack(entry.tag, requeue=True)
        state.unacked = 0

    def _maybe_idle(self, state: _Queue) -> None:
        if not state.waiters and state.idle_timer is None and (state.tag is not None or state.parked):
            state.idle_timer = self.loop.call_later(LINGER, self._idle, state)

    def _idle(self, state: _Queue) -> None:
        state.idle_timer = None
        if state.waiters:
            return
        self._stop_consumer(state)
        if not state.parked and state.starting is None and self.queues.get(state.name) is state:
            del self.queues[state.name]

    def _on_message(self, carrier, method, properties, body) -> None:
        state = self.tags.get(method.consumer_tag)
        if state is None:  # a consumer we have cancelled: back to the queue
            carrier.basic_nack(method.delivery_tag, requeue=True)
            return
        channel = self._channel_of(state.name, properties)
        if channel is None:  # not something this layer sent: drop it rather than loop on it
            carrier.basic_ack(method.delivery_tag)
            return
        future = self._next_waiter(state, channel)
        if future is not None:
            carrier.basic_ack(method.delivery_tag)
            future.set_result(body)
            return
        state.parked.append(_Parked(channel, body, method.delivery_tag, carrier, time.monotonic()))
        state.unacked += 1
        if not state.waiters:
            self._maybe_idle(state)
        elif state.unacked >= PREFETCH:
            self._spill(state)

    def _spill(self, state: _Queue) -> None:
        """The window is full of messages nobody waits for while a sibling waits: take them
        into the local buffer so the broker sends more."""
        for entry in state.parked:
            if entry.tag is not None and _usable(entry.carrier):
                entry.carrier.basic_ack(entry.tag)
            entry.tag = None
        state.unacked = 0

    def _channel_of(self, queue: str, properties) -> str | None:
        if not queue.endswith("!"):
            return self.names.channel_of(queue)  # a normal channel's own queue
        if properties.type:
            return properties.type  # full name of a process-specific channel
        deaths = (properties.headers or {}).get("x-death")
        if deaths:  # a group copy forwarded by a membership queue
            origin = deaths[0].get("queue")
            if isinstance(origin, bytes):
                origin = origin.decode()
            return self.names.member_of(origin or "")
        return None

    # --- sends from this loop ------------------------------------------------------------------
    async def before_send(self, queue: str) -> None:
        """Make the broker count what this loop holds parked for ``queue`` (see above)."""
        state = self.queues.get(queue)
        if state is None or not state.unacked:
            return
        await asyncio.sleep(0)  # a receive about to come back for them usually takes them now
        if not state.unacked:
            return
        carrier = state.carrier
        self._stop_consumer(state)
        if _usable(carrier):
            done = self.loop.create_future()
            carrier.basic_qos(prefetch_count=PREFETCH,
                              callback=lambda frame: done.done() or done.set_result(None))
            try:
                await asyncio.wait_for(done, self.session.shared.config.timeout)
            except asyncio.TimeoutError:
                raise BrokerUnavailable("RabbitMQ did not answer basic.qos in time") from None

    def after_send(self, queue: str) -> None:
        state = self.queues.get(queue)
        if state is not None and state.waiters and state.tag is None and state.starting is None:
            self._restart(state, force=False)

    # --- events from the link and the session --------------------------------------------------
    def on_consumer_cancelled(self, tag: str) -> None:
        """The broker cancelled a consumer: its queue was deleted (a flush, x-expires)."""
        state = self.tags.pop(tag, None)
        if state is None or state.tag != tag:
            return
        state.tag = state.carrier = None
        state.parked.clear()  # flushed with their queue
        state.unacked = 0
        self.session.forget(state.name)
        if state.waiters:
            self._restart(state, force=True)

    def on_consume_channel(self, link) -> None:
        """The consume channel was reopened: the broker requeued everything unacked on it."""
        self._forget_consumers()
        for state in list(self.queues.values()):
            if state.waiters:
                self._restart(state, force=True)

    def on_link_lost(self) -> None:
        self._forget_consumers()

    def on_link(self, link) -> None:
        for state in list(self.queues.values()):
            if state.waiters and state.tag is None:
                self._restart(state, force=True)

    def _forget_consumers(self) -> None:
        self.tags.clear()
        for state in self.queues.values():
            state.tag = state.carrier = None
            state.parked = collections.deque(entry for entry in state.parked if entry.tag is None)
            state.unacked = 0

    def flushed(self) -> None:
        """flush() in this loop: what we hold from before it is gone too."""
        for state in self.queues.values():
            for entry in state.parked:
                if entry.tag is not None and _usable(entry.carrier):
                    entry.carrier.basic_ack(entry.tag)
            state.parked.clear()
            state.unacked = 0

    def _fail(self, state: _Queue, exc: BaseException) -> None:
        waiters, state.waiters = state.waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)

    def fail_all(self, exc: BaseException) -> None:
        for state in self.queues.values():
            self._fail(state, exc)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for state in self.queues.values():
            if state.idle_timer is not None:
                state.idle_timer.cancel()
        self.fail_all(BrokerUnavailable("the layer was closed while this receive waited"))
        self.queues.clear()
        self.tags.clear()


def _usable(carrier) -> bool:
    return carrier is not None and carrier.is_open
