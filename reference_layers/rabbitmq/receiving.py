"""Receiver: one loop's waiting ``receive()`` calls, the consumers that feed them, and the
rules that keep capacity exact whoever sends.

RabbitMQ counts only *ready* messages against ``x-max-length``: a delivery pushed to us but
not yet taken by a receive would escape the capacity when another process sends. So the
broker may push only what receives wait for:

- each consumer has a window of one delivery (basic.qos prefetch 1, per consumer), and a
  queue has at most as many open windows as receives waiting on it: a receive that finds
  none free starts a consumer (basic.consume no-wait, so a fan-out of many waiting
  receives costs no round trip each), and a consumer left over when a receive goes away
  (cancelled, timed out) is cancelled;
- a delivery taken by a receive keeps its consumer's window shut (unacked) until a receive
  waits on the queue again; then the ack reopens it, so a receive loop keeps its consumer
  and pays no basic.consume/basic.cancel per receive, only the ack -> delivery round trip.
  After ``LINGER`` seconds with no receive on the queue the consumers are cancelled and what
  they held is acked only once the broker confirmed the cancel (an earlier ack would reopen
  a window the broker could push into). Cost: if the connection drops in that short time,
  the broker requeues a message a receive already returned, and it is delivered again;
  close() acks them first;
- the deliveries nobody asked for are those in flight when a receive goes (pika rejects
  them back, requeued) and, on ``p!`` queues, messages for a sibling (``p!b`` while only
  ``p!a`` waits; the broker cannot tell them apart). Those are parked unacked with their
  window shut while another consumer serves the waiting sibling; a receive on their channel
  takes them without a round trip. They are requeued (cancel, then basic.nack requeue) after
  ``LINGER`` seconds with no receive on the queue, and before this loop sends to that queue
  (then the broker is asked for a reply on that channel, so it counts them when it judges
  the send).

Known limit: parked sibling deliveries are not counted by the broker when another process
sends, so a ``p!`` queue with a sibling waiting can hold its capacity plus the messages
parked for channels nobody waits on; once ``SPILL_AT`` pile up they are acked into a local
buffer (as channels_redis does) so the waiting sibling is not starved, and from then the
capacity no longer bounds them. Normal channels (one queue each) never park.

Process-specific channels ``p!a``, ``p!b`` share the queue of ``p!``; a message says which
of them it is for in its ``type`` property (direct sends) or, for a group copy, in the
``x-death`` header naming the membership queue that forwarded it (broker_ops.py).
"""

from __future__ import annotations

import asyncio
import collections
import time

from .link import PREFETCH, BrokerUnavailable, within

LINGER = 0.1  # seconds consumers (and what they hold unacked) outlive the last receive on a queue
SPILL_AT = 200  # parked sibling deliveries that make a waiting sibling's queue spill (see above)


class _Consumer:
    """One basic.consume with a window of one delivery."""

    __slots__ = ("tag", "held", "delivery_tag")

    def __init__(self, tag: str):
        self.tag = tag
        self.held: str | None = None  # None: window open; "parked"; "settle": taken, ack when a receive waits
        self.delivery_tag: int | None = None


class _Parked:
    __slots__ = ("channel", "body", "tag", "consumer", "arrived")

    def __init__(self, channel, body, tag, consumer, arrived):
        self.channel = channel
        self.body = body
        self.tag = tag  # delivery tag while unacked, None once acked (local buffer)
        self.consumer = consumer  # the consumer whose window it holds shut
        self.arrived = arrived


class _Queue:
    """Receive-side state of one broker queue on this loop."""

    __slots__ = ("name", "waiters", "count", "parked", "unacked", "consumers", "open", "settled",
                 "carrier", "starting", "idle_timer", "balance_due")

    def __init__(self, name: str):
        self.name = name
        self.waiters: dict[str, collections.deque[asyncio.Future]] = {}
        self.count = 0  # futures in waiters: kept as they come and go, a fan-out has thousands
        self.parked: collections.deque[_Parked] = collections.deque()
        self.unacked = 0
        self.consumers: dict[str, _Consumer] = {}
        self.open: dict[str, _Consumer] = {}  # the consumers whose window is open
        self.settled: dict[str, _Consumer] = {}  # the consumers holding a taken delivery
        self.carrier = None  # the pika channel its consumers live on; None until declared
        self.starting: asyncio.Future | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.balance_due = False

    def has_waiters(self) -> bool:
        return bool(self.waiters)

    def add_waiter(self, channel: str, future: asyncio.Future) -> None:
        self.waiters.setdefault(channel, collections.deque()).append(future)
        self.count += 1

    def add_consumer(self, consumer: _Consumer) -> None:
        self.consumers[consumer.tag] = consumer
        self.open[consumer.tag] = consumer

    def drop_consumer(self, tag: str) -> None:
        self.consumers.pop(tag, None)
        self.open.pop(tag, None)
        self.settled.pop(tag, None)

    def clear_consumers(self) -> None:
        self.consumers.clear()
        self.open.clear()
        self.settled.clear()

    def hold(self, consumer: _Consumer, held: str | None) -> None:
        """Set what the consumer's window holds, keeping the open/settled indexes in step."""
        tag = consumer.tag
        self.open.pop(tag, None)
        self.settled.pop(tag, None)
        consumer.held = held
        if tag in self.consumers:
            if held is None:
                self.open[tag] = consumer
            elif held == "settle":
                self.settled[tag] = consumer

    def any_channel(self) -> str:
        return next(iter(self.waiters), None) or (self.parked[0].channel if self.parked else "")


class _StartAgain(Exception):
    """The receive that was starting consumption went away: the next one starts it."""


class Receiver:
    def __init__(self, session):
        self.session = session
        self.loop = session.loop
        self.names = session.shared.names
        self.expiry = session.shared.expiry
        self.queues: dict[str, _Queue] = {}
        self.tags: dict[str, _Queue] = {}
        self._acks_due: dict[int, object] = {}  # delivery tag -> carrier: taken, ack after a cancel
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
        state.add_waiter(channel, future)
        if state.idle_timer is not None:
            state.idle_timer.cancel()
            state.idle_timer = None
        try:
            if _usable(state.carrier):
                self._balance(state)
            else:
                await self._start(state, channel)
            return await future
        except BaseException:
            self._drop_waiter(state, channel, future)
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed over just as this receive was cancelled: keep it for the next.
                state.parked.appendleft(_Parked(channel, future.result(), None, None, time.monotonic()))
                self._serve(state, channel)
            raise

    def _drop_waiter(self, state: _Queue, channel: str, future) -> None:
        waiters = state.waiters.get(channel)
        if waiters is not None:
            try:
                waiters.remove(future)
                state.count -= 1
            except ValueError:
                pass
            if not waiters:
                del state.waiters[channel]
        self._balance(state)

    def _next_waiter(self, state: _Queue, channel: str):
        waiters = state.waiters.get(channel)
        while waiters:
            future = waiters.popleft()
            state.count -= 1
            if not future.done():
                if not waiters:
                    del state.waiters[channel]
                return future
        if waiters is not None:
            del state.waiters[channel]
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
                state.hold(entry.consumer, "settle")  # acked (or its consumer cancelled) next turn
                self._balance_soon(state)
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
        """Declare the queue (once per connection) and note the channel its consumers use."""
        while not _usable(state.carrier):
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
                if link.open and carrier is link.consume_channel:
                    state.carrier = carrier
            except BaseException as exc:
                state.starting = None
                starting.set_exception(exc if isinstance(exc, Exception) else _StartAgain())
                starting.exception()  # retrieved: whoever waits on it sees it
                raise
            state.starting = None
            starting.set_result(None)
        self._balance(state)

    def _restart(self, state: _Queue, force: bool) -> None:
        """Start consuming again in the background for receives already waiting."""
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

    def _balance_soon(self, state: _Queue) -> None:
        if not state.balance_due:
            state.balance_due = True
            self.loop.call_soon(self._balance, state)

    def _balance(self, state: _Queue) -> None:
        """Settle taken deliveries and make open windows match waiting receives exactly."""
        state.balance_due = False
        carrier = state.carrier
        if not _usable(carrier):
            return
        wanted = state.count
        opened = state.open
        while state.settled and len(opened) < wanted:
            consumer = next(iter(state.settled.values()))
            state.hold(consumer, None)  # a receive waits again: reopen this window
            carrier.basic_ack(consumer.delivery_tag)
        while len(opened) > wanted:
            self._cancel(state, opened[next(reversed(opened))])
        while len(opened) < wanted:
            consumer = _Consumer(_consume(carrier, state.name, self._on_message))
            state.add_consumer(consumer)
            self.tags[consumer.tag] = state
        if not wanted:
            self._maybe_idle(state)

    def _cancel(self, state: _Queue, consumer: _Consumer, then=None, done=None) -> None:
        """basic.cancel, and only after it ack/nack what the consumer held, so the window that
        reopens is no longer there to push into."""
        carrier = state.carrier
        state.drop_consumer(consumer.tag)
        self.tags.pop(consumer.tag, None)
        if then is not None and then[0] == "ack":
            self._acks_due[then[1]] = carrier  # close() sends it if the reply never comes

        def cancelled(frame=None):
            if then is not None and then[0] == "ack":
                if self._acks_due.pop(then[1], None) is not None and _usable(carrier):
                    carrier.basic_ack(then[1])
            elif then is not None and _usable(carrier):
                carrier.basic_nack(then[1], requeue=True)
            if done is not None:
                done()

        try:
            if _cancel_nowait(carrier, consumer.tag):
                cancelled()  # on the wire after the cancel: the broker handles them in order
            else:
                carrier.basic_cancel(consumer.tag, callback=cancelled)
        except Exception:  # noqa: BLE001 - channel closed: the broker requeued what it held
            if done is not None:
                done()

    def _stop_consumer(self, state: _Queue) -> asyncio.Future:
        """Cancel every consumer of the queue and put parked, unacked messages back in their
        places; the future is done once the broker has them back."""
        finished = self.loop.create_future()
        held = {entry.consumer.tag: entry for entry in state.parked if entry.tag is not None}
        state.parked = collections.deque(entry for entry in state.parked if entry.tag is None)
        state.unacked = 0
        consumers = list(state.consumers.values())
        left = [len(consumers)]

        def one_done():
            left[0] -= 1
            if left[0] == 0 and not finished.done():
                finished.set_result(None)

        for consumer in consumers:
            entry = held.get(consumer.tag)
            if entry is not None:
                then = ("nack", entry.tag)
            elif consumer.held == "settle":
                then = ("ack", consumer.delivery_tag)
            else:
                then = None
            self._cancel(state, consumer, then=then, done=one_done)
        if not consumers:
            finished.set_result(None)
        return finished

    def _maybe_idle(self, state: _Queue) -> None:
        if not state.waiters and state.idle_timer is None:
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
        consumer = state.consumers.get(method.consumer_tag) if state is not None else None
        if consumer is None:  # a consumer we have cancelled: back to the queue
            carrier.basic_nack(method.delivery_tag, requeue=True)
            return
        channel = self._channel_of(state.name, properties)
        if channel is None:  # not something this layer sent: drop it rather than loop on it
            carrier.basic_ack(method.delivery_tag)
            return
        consumer.delivery_tag = method.delivery_tag
        future = self._next_waiter(state, channel)
        if future is not None:
            state.hold(consumer, "settle")
            future.set_result(body)
            self._balance_soon(state)  # after the receive's caller had its turn
            return
        state.hold(consumer, "parked")
        state.parked.append(_Parked(channel, body, method.delivery_tag, consumer, time.monotonic()))
        state.unacked += 1
        if state.waiters and state.unacked >= SPILL_AT:
            self._spill(state)
        self._balance(state)

    def _spill(self, state: _Queue) -> None:
        """Too many deliveries nobody waits for while a sibling waits: take them into the
        local buffer so the broker sends more."""
        for entry in state.parked:
            if entry.tag is not None:
                self._cancel(state, entry.consumer, then=("ack", entry.tag))
            entry.tag = entry.consumer = None
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
        returned = self._stop_consumer(state)
        timeout = self.session.shared.config.timeout
        try:
            await within(asyncio.shield(returned), timeout)
            if _usable(carrier):
                done = self.loop.create_future()
                carrier.basic_qos(prefetch_count=PREFETCH,
                                  callback=lambda frame: done.done() or done.set_result(None))
                await within(done, timeout)
        except asyncio.TimeoutError:
            raise BrokerUnavailable("RabbitMQ did not answer basic.cancel/basic.qos in time") from None

    def after_send(self, queue: str) -> None:
        state = self.queues.get(queue)
        if state is None or not state.waiters:
            return
        if _usable(state.carrier):
            self._balance(state)
        elif state.starting is None:
            self._restart(state, force=False)

    # --- events from the link and the session --------------------------------------------------
    def on_consumer_cancelled(self, tag: str) -> None:
        """The broker cancelled a consumer: its queue was deleted (a flush, x-expires)."""
        state = self.tags.pop(tag, None)
        if state is None:
            return
        for other, consumer in state.consumers.items():
            self.tags.pop(other, None)  # the broker cancels every consumer of that queue
            if consumer.held == "settle" and _usable(state.carrier):
                state.carrier.basic_ack(consumer.delivery_tag)
        state.clear_consumers()
        state.carrier = None
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
            if state.waiters and not _usable(state.carrier):
                self._restart(state, force=True)

    def _forget_consumers(self) -> None:
        self.tags.clear()
        self._acks_due.clear()
        for state in self.queues.values():
            state.clear_consumers()
            state.carrier = None
            state.parked = collections.deque(entry for entry in state.parked if entry.tag is None)
            state.unacked = 0

    def flushed(self) -> None:
        """flush() in this loop: what we hold from before it is gone too."""
        for state in self.queues.values():
            for entry in state.parked:
                if entry.tag is not None and _usable(state.carrier):
                    state.carrier.basic_ack(entry.tag)  # its queue is gone: the broker cancels
            state.parked.clear()
            state.unacked = 0

    def _fail(self, state: _Queue, exc: BaseException) -> None:
        waiters, state.waiters = state.waiters, {}
        state.count = 0
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        self._balance(state)

    def fail_all(self, exc: BaseException) -> None:
        for state in self.queues.values():
            self._fail(state, exc)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for state in self.queues.values():
            if state.idle_timer is not None:
                state.idle_timer.cancel()
            for consumer in state.consumers.values():
                if consumer.held == "settle" and _usable(state.carrier):
                    state.carrier.basic_ack(consumer.delivery_tag)  # taken: not to come back
        for tag, carrier in self._acks_due.items():
            if _usable(carrier):
                carrier.basic_ack(tag)
        self._acks_due.clear()
        self.fail_all(BrokerUnavailable("the layer was closed while this receive waited"))
        self.queues.clear()
        self.tags.clear()


def _usable(carrier) -> bool:
    return carrier is not None and carrier.is_open


def _consume(carrier, queue: str, on_message) -> str:
    """basic.consume with no-wait: pika sends one RPC at a time and waits for each reply, so
    a fan-out starting a consumer per waiting receive would pay a round trip per receive.
    Only an optimisation on pika's internals; without them, pika's own basic_consume."""
    import pika.spec

    send = getattr(carrier, "_send_method", None)
    consumers = getattr(carrier, "_consumers", None)
    make_tag = getattr(carrier, "_generate_consumer_tag", None)
    if send is None or not isinstance(consumers, dict) or make_tag is None:
        return carrier.basic_consume(queue, on_message)
    tag = make_tag()
    consumers[tag] = on_message
    send(pika.spec.Basic.Consume(queue=queue, consumer_tag=tag, nowait=True, arguments={}))
    return tag


def _cancel_nowait(carrier, tag: str) -> bool:
    """Send basic.cancel (no-wait) at once, ahead of any ack that follows it. pika would hold
    a cancel back behind an RPC awaiting its reply while letting acks pass, and it runs every
    cancel callback on the first basic.cancel-ok. False if pika's internals differ."""
    import pika.spec

    send = getattr(carrier, "_send_method", None)
    consumers = getattr(carrier, "_consumers", None)
    cancelled = getattr(carrier, "_cancelled", None)
    if send is None or not isinstance(consumers, dict) or not isinstance(cancelled, set):
        return False
    if tag not in consumers:
        return True  # the broker cancelled it already
    cancelled.add(tag)  # pika now rejects (requeues) deliveries still on their way to it
    del consumers[tag]
    send(pika.spec.Basic.Cancel(consumer_tag=tag, nowait=True))
    return True
