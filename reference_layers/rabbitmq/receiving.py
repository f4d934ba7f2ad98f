"""Receiver: one loop's waiting ``receive()`` calls, the consumers that feed them, and the rules that keep
capacity exact whoever sends.

RabbitMQ counts only *ready* messages against ``x-max-length``: a delivery pushed to us but not yet taken by
a receive would escape the capacity when another process sends. So the broker may push only what receives
wait for:

- each consumer has a window of one delivery (basic.qos prefetch 1, per consumer), and a queue has at most
  as many open windows as receives waiting on it: a receive that finds none free starts a consumer
  (basic.consume no-wait, so a fan-out of many waiting receives costs no round trip each), and a consumer
  left over when a receive goes away (cancelled, timed out) is cancelled;
- a delivery taken by a receive keeps its consumer's window shut (unacked) until a receive waits on the
  queue again; then the ack reopens it, so a receive loop keeps its consumer and pays no
  basic.consume/basic.cancel per receive, only the ack -> delivery round trip. After ``LINGER`` seconds with
  no receive on the queue the consumers are cancelled and what they held is acked only once the broker
  confirmed the cancel (an earlier ack would reopen a window the broker could push into). A connection
  dropped before the ack makes the broker requeue a message a receive already returned: it comes back with
  an id this layer object let in already, and is acked and dropped (dedupe.py); close() acks them first;
- the deliveries nobody asked for are those in flight when a receive goes (pika rejects them back, requeued)
  and, on ``p!`` queues, messages for a sibling (``p!b`` while only ``p!a`` waits; the broker cannot tell
  them apart). Those are parked unacked with their window shut while another consumer serves the waiting
  sibling; a receive on their channel takes them without a round trip. They are requeued (cancel, then
  basic.nack requeue) after ``LINGER`` seconds with no receive on the queue, and before this loop sends to
  that queue (then the broker is asked for a reply on that channel, so it counts them when it judges the
  send).

Known limits: parked sibling deliveries are not counted by the broker when another process sends, so a
``p!`` queue with a sibling waiting can hold its capacity plus the messages parked for channels nobody waits
on; once ``SPILL_AT`` pile up they are acked into a local buffer (as channels_redis does) so the waiting
sibling is not starved, and from then the capacity no longer bounds them. Normal channels (one queue each)
never park. A duplicate is dropped only by the layer object that let the first copy in: a normal channel
received by several processes may hand a message requeued by a dropped connection to another of them, which
delivers it again.

Process-specific channels ``p!a``, ``p!b`` share the queue of ``p!``; a message says which of them it is for
in its ``type`` property (direct sends) or, for a group copy, in the ``x-death`` header naming the
membership queue that forwarded it (memberships.py).

State per queue: queue_state.py; starting and cancelling consumers: windows.py.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from typing import Any

from . import flush_answers
from .errors import BrokerUnavailable
from .feed_events import FeedEvents, NoFeed
from .futures import within
from .link import Link
from .presence import AWAY, Presence, qos_round_trip
from .queue_state import Held, Parked, QueueState, acked, unacked, usable
from .session import Session
from .windows import Windows

SPILL_AT = 200  # parked sibling deliveries that make a waiting sibling's queue spill (see above)


class _StartAgain(Exception):
    """The receive that was starting consumption went away: the next one starts it."""


class Receiver:
    """One loop's waiting receives; told of link events by its session (session.LinkEvents)."""

    def __init__(self, session: Session):
        self.session = session
        self.loop = session.loop
        self.names = session.shared.names
        self.expiry = session.shared.expiry
        self.queues: dict[str, QueueState] = {}
        self.seen = session.shared.seen  # ids let in: what a dropped connection brings again (dedupe.py)
        self.windows = Windows(self.loop, self._on_message, self._forget_if_idle, self._given_back)
        self._tasks: set[asyncio.Task[None]] = set()
        self.feed: FeedEvents = NoFeed()  # this loop's group copies (process_groups.py)
        self.answerer = secrets.token_hex(6)  # names this loop's answers to flushes (flush_answers.py)
        self.presence = Presence(self.loop)  # whether this loop read what the broker told it lately

    def has_waiters(self) -> bool:
        return any(state.has_waiters() for state in self.queues.values())

    def state_of(self, queue: str) -> QueueState:
        state = self.queues.get(queue)
        if state is None:
            state = self.queues[queue] = QueueState(queue)
        return state

    def parked_for(self, queue: str, channel: str) -> int:
        """Messages for ``channel`` this loop holds parked (the broker no longer counts them)."""
        state = self.queues.get(queue)
        return 0 if state is None else state.parked.count(channel)

    # --- receive -------------------------------------------------------------------------------
    async def receive(self, channel: str) -> bytes:
        state = self.state_of(self.names.queue(channel))
        if channel in state.parked.first:
            if not self.presence.ran_lately():
                await self.presence.confirm(await self.session.get_link())  # a flush's cancel, unread?
            body = self.take_parked(state, channel, present=True)
            if body is not None:
                return body
        future = self._wait(state, channel)
        try:
            if usable(state.carrier):
                self.windows.on_waiter(state)
            else:
                await self._start_through_drops(state, channel)
            return await future
        except BaseException:
            self.abandon(channel, future)
            raise

    def wait_at_once(self, state: QueueState, channel: str) -> asyncio.Future[bytes] | None:
        """At once, without a coroutine: the future of a new waiter of ``channel`` if its queue
        has consumers here (await it; ``abandon`` it on an error), else None: ``receive`` starts
        them. Nothing is parked for ``channel`` (the caller looked)."""
        carrier = state.carrier
        if carrier is None or not carrier.is_open:  # usable(), written out: this runs per member and copy
            return None
        future = self._wait(state, channel)
        self.windows.on_waiter(state)
        return future

    def _wait(self, state: QueueState, channel: str) -> asyncio.Future[bytes]:
        self.feed.watch_soon(state.name)  # its group copies may wait for a consumer on this loop
        future = self.loop.create_future()
        state.waiters.add(channel, future)
        if state.idle_timer is not None:
            state.idle_timer.cancel()
            state.idle_timer = None
        return future

    def abandon(self, channel: str, future: asyncio.Future[bytes]) -> None:
        """A receive waiting on ``future`` ends with an error (cancelled, most often)."""
        state = self.state_of(self.names.queue(channel))
        state.waiters.remove(channel, future)
        self.windows.balance(state)
        if future.done() and not future.cancelled() and future.exception() is None:
            # Handed over just as this receive was cancelled: keep it for the next.
            state.parked.park_first(channel, Parked(future.result(), None, None, time.monotonic()))
            self.serve(state, channel)

    def take_parked(self, state: QueueState, channel: str, present: bool = False) -> bytes | None:
        """The oldest unexpired message parked for ``channel``, taken off: None if none, or if
        this loop was away (presence.py; ``receive`` asks the broker first) unless ``present``
        (the caller knows the broker's news is read). One call: a late member's whole receive."""
        if channel not in state.parked.first:
            return None
        now = time.monotonic()  # the clock the expiry and the presence marks read
        if not present and now - self.presence.marked_at >= AWAY:
            return None
        while (entry := state.parked.unpark(channel)) is not None:  # a fan-out parks thousands, taken one by one
            fresh = now - entry.arrived < self.expiry
            if entry.tag is not None:
                state.unacked -= 1
                if entry.consumer is not None:  # always, while it is unacked
                    state.hold(entry.consumer, Held.TAKEN)  # acked (or its consumer cancelled) next turn
                self.windows.balance_soon(state)
            if fresh:
                return entry.body
        return None

    def serve(self, state: QueueState, channel: str) -> None:
        """Hand parked messages of ``channel`` to its waiting receives."""
        while channel in state.waiters.first:
            body = self.take_parked(state, channel, present=True)  # on the broker's news: present
            if body is None:
                return
            future = state.waiters.take(channel)
            if future is None:
                state.parked.park_first(channel, Parked(body, None, None, time.monotonic()))
                return
            future.set_result(body)

    # --- consumers -----------------------------------------------------------------------------
    async def _start(self, state: QueueState, channel: str, force: bool = False) -> None:
        """Declare the queue (once per connection) and note the channel its consumers use."""
        while not usable(state.carrier):
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
        self.windows.balance(state)

    async def _start_through_drops(self, state: QueueState, channel: str) -> None:
        """A connection dropped while the queue was being set up: set it up on the next one,
        within the layer's timeout (connecting again is bounded by it too)."""
        deadline = self.loop.time() + self.session.shared.config.timeout
        while True:
            try:
                await self._start(state, channel)
                return
            except BrokerUnavailable:
                if self.loop.time() >= deadline:
                    raise

    def _restart(self, state: QueueState, force: bool) -> None:
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

    def _forget_if_idle(self, state: QueueState) -> None:
        """Its consumers were let go after LINGER: drop the state unless something is left."""
        if not state.parked and state.starting is None and self.queues.get(state.name) is state:
            del self.queues[state.name]

    def _on_message(self, carrier: Any, method: Any, properties: Any, body: bytes) -> None:
        state = self.windows.tags.get(method.consumer_tag)
        consumer = state.consumers.get(method.consumer_tag) if state is not None else None
        if state is None or consumer is None:  # a consumer we have cancelled: back to the queue
            carrier.basic_nack(method.delivery_tag, requeue=True)
            return
        channel = self.names.delivered_to(state.name, properties)
        if channel is None:  # not something this layer sent: drop it rather than loop on it
            carrier.basic_ack(method.delivery_tag)
            return
        if not self.seen.first_time(channel, properties.message_id):
            carrier.basic_ack(method.delivery_tag)  # let in before a dropped connection: again
            return
        consumer.delivery_tag = method.delivery_tag
        state.delivered()
        future = state.waiters.take(channel)
        if future is not None:
            state.hold(consumer, Held.TAKEN)
            future.set_result(body)
            self.windows.balance_soon(state)  # after the receive's caller had its turn
            return
        state.hold(consumer, Held.PARKED)
        state.parked.park(channel, Parked(body, method.delivery_tag, consumer, time.monotonic(), properties.message_id))
        state.unacked += 1
        if state.waiters.first and state.unacked >= SPILL_AT:
            self.windows.spill(state)
        self.windows.balance(state)

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
        returned = self.windows.stop(state)
        timeout = self.session.shared.config.timeout
        try:
            await within(asyncio.shield(returned), timeout)
            if usable(carrier):
                await qos_round_trip(carrier, timeout)
        except asyncio.TimeoutError:
            raise BrokerUnavailable("RabbitMQ did not answer basic.cancel/basic.qos in time") from None

    def after_send(self, queue: str) -> None:
        state = self.queues.get(queue)
        if state is None or not state.has_waiters():
            return
        if usable(state.carrier):
            self.windows.balance(state)
        elif state.starting is None:
            self._restart(state, force=False)

    # --- events from the link and the session --------------------------------------------------
    def on_consumer_cancelled(self, tag: str) -> None:
        """The broker cancelled a consumer: its queue was deleted (a flush, x-expires). What
        it held is dropped, then a flush under way is told (flush_answers.py)."""
        copies = self.feed.on_cancelled(tag)
        if copies is not None:
            flush_answers.answer(self.session.link, self.names, self.answerer, copies, 1)
            return
        state = self.windows.tags.pop(tag, None)
        if state is None:
            return
        consumers = len(state.consumers.keys() | {tag})
        for other, consumer in state.consumers.items():
            self.windows.tags.pop(other, None)  # the broker cancels every consumer of that queue
            if consumer.held is Held.TAKEN and usable(state.carrier):
                state.carrier.basic_ack(consumer.delivery_tag)
        state.clear_consumers()
        state.carrier = None
        state.parked.clear()  # flushed with their queue
        state.unacked = 0
        self.session.forget(state.name)
        flush_answers.answer(self.session.link, self.names, self.answerer, state.name, consumers)
        if state.has_waiters():
            self._restart(state, force=True)

    def consumer_counts(self) -> Counter[str]:
        """This loop's consumers per queue, the feed's included (a flush here drops what they hold)."""
        counts = Counter(state.name for state in self.windows.tags.values())
        counts.update(self.feed.consumed())
        return counts

    def on_consume_channel(self, link: Link) -> None:
        """The consume channel was reopened: the broker requeued everything unacked on it."""
        self._forget_consumers()
        self.feed.on_link_lost()
        self.feed.on_link()
        for state in list(self.queues.values()):
            if state.has_waiters():
                self._restart(state, force=True)

    def on_link_lost(self) -> None:
        self._forget_consumers()
        self.feed.on_link_lost()

    def on_link(self, link: Link) -> None:
        self.feed.on_link()
        for state in list(self.queues.values()):
            if state.has_waiters() and not usable(state.carrier):
                self._restart(state, force=True)

    def _forget_consumers(self) -> None:
        self.windows.forget_all()
        for state in self.queues.values():
            state.clear_consumers()
            state.carrier = None
            for channel, entry in state.parked.items():
                if unacked(entry):  # the broker requeued it with the connection
                    self._given_back(channel, entry)
            state.parked = state.parked.keeping(acked)
            state.unacked = 0

    def _given_back(self, channel: str, entry: Parked) -> None:
        self.seen.forget(channel, entry.message_id)

    def flushed(self) -> None:
        """flush() in this loop: what we hold from before it is gone too."""
        for state in self.queues.values():
            for entry in state.parked:
                if entry.tag is not None and usable(state.carrier):
                    state.carrier.basic_ack(entry.tag)  # its queue is gone: the broker cancels
            state.parked.clear()
            state.unacked = 0

    def _fail(self, state: QueueState, exc: BaseException) -> None:
        state.waiters.fail(exc)
        self.windows.balance(state)

    def fail_all(self, exc: BaseException) -> None:
        for state in self.queues.values():
            self._fail(state, exc)

    def close(self) -> None:
        self.presence.stop()
        for task in self._tasks:
            task.cancel()
        for state in self.queues.values():
            if state.idle_timer is not None:
                state.idle_timer.cancel()
            for consumer in state.consumers.values():
                if consumer.held is Held.TAKEN and usable(state.carrier):
                    state.carrier.basic_ack(consumer.delivery_tag)  # taken: not to come back
            for channel, entry in state.parked.items():
                if unacked(entry):  # the broker requeues it, for another loop to let in
                    self._given_back(channel, entry)
        self.windows.send_due_acks()
        self.fail_all(BrokerUnavailable("the layer was closed while this receive waited"))
        self.queues.clear()
        self.windows.tags.clear()
