"""Group copies for a process's own members: one copy per process, fanned out inside it.

A forwarding queue per membership (memberships.py) costs the broker a dead-lettered copy
per member. For the members that matter most — a layer object's own ``p!x`` channels, added
by itself (a consumer joining its chat room) — the layer instead binds one queue per
process, its *copies queue*, to the group's key: a group_send puts one copy there, whatever
the number of members, and this loop's :class:`GroupFeed` hands it to the members it knows
(:class:`LocalBook`). Memberships added by another layer object keep the forwarding queues.

Capacity stays the process's shared capacity, decided in queue order: before a copy is fanned
out, what waits in the process queue is taken into this loop (basic.get), so the room left is
exact; each member gets the copy while there is room, the others miss it (CAP-5, counted in
this object's statistics). A group_send by the layer object that owns members returns only
once its copy was fanned out here, so its later calls see the copy placed (the model's order).
Sends from this object to a process queue holding fanned-out copies count them (broker_ops).

Limits: copies fanned out are held by the loop that took them, like parked sibling messages
(receiving.py): a receive on another loop of the same object does not see them, and a sender
in another process is judged by the broker without them. A group_discard by another layer
object does not reach the owner's book (it deletes only a forwarding queue).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Coroutine

import pika

from .drain_marks import AheadGet, DrainMark, DrainMarks, GroupCopy
from .errors import NOT_FOUND, BrokerRefused
from .link import Link
from .local_book import LocalBook
from .names import GROUPS_EXCHANGE
from .own_sends import OwnSends, Placement
from .placing import place_copy, serve_acked
from .queue_state import Parked, unacked, usable
from .receiving import Receiver
from .session import Session


class GroupFeed:
    """This loop's consumers on copies queues, and the fan-out of each copy they bring."""

    def __init__(self, session: Session, receiver: Receiver, book: LocalBook, sender: str,
                 on_missed: Callable[[int], None]):
        self.session = session
        self.receiver = receiver
        self.names = session.shared.names
        self.book = book
        self._on_missed = on_missed
        self._tags: dict[str, str] = {}  # consumer tag -> process queue
        self._watched: dict[str, str] = {}  # process queue -> consumer tag ("" while starting)
        self.own_sends = OwnSends(session.loop, sender, session.shared.config.timeout)
        self._drained = DrainMarks()  # process queues taken in ahead of their copy
        self._lock = asyncio.Lock()  # held by a drain or a fan-out: one at a time, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self._ahead: AheadGet | None = None  # holds the lock until its reply is read
        receiver.feed = self

    # --- memberships ---------------------------------------------------------------------------
    async def add(self, group: str, channel: str, group_expiry: float) -> None:
        queue = self.names.queue(channel)
        await self.session.ensure_queue(queue, channel)
        link = await self._ensure_copies(queue)
        try:
            await link.admin("queue_bind", self.names.group_copies(queue), GROUPS_EXCHANGE,
                             routing_key=self.names.group_key(group))
        except BrokerRefused as exc:
            if exc.reply_code != NOT_FOUND:
                raise
            return  # a flush deleted the copies queue just now: it ended this membership too
        self.book.add(queue, group, channel, time.monotonic() + group_expiry)
        await self._watch(queue)

    async def discard(self, group: str, channel: str) -> None:
        queue = self.names.queue(channel)
        if self.book.discard(queue, group, channel):
            link = await self.session.get_link()
            await link.admin("queue_unbind", self.names.group_copies(queue), GROUPS_EXCHANGE,
                             routing_key=self.names.group_key(group))

    async def _ensure_copies(self, queue: str) -> Link:
        copies = self.names.group_copies(queue)
        arguments = self.session.copies_arguments()

        async def declare(link: Link) -> None:
            await link.admin("queue_declare", copies, durable=False, arguments=arguments)
            await (await self.session.register(link, copies, arguments["x-expires"]))

        await self.session.ensure_queue(copies, "", declare=declare)
        return await self.session.get_link()

    async def _watch(self, queue: str, starting: bool = False) -> None:
        if self._watched.get(queue) or (queue in self._watched and not starting):
            return
        self._watched[queue] = ""
        try:
            link = await self.session.get_link()
            carrier = await link.consume_channel_ready()
            tag = carrier.basic_consume(self.names.group_copies(queue), self._on_copy)
        except BaseException:
            self._watched.pop(queue, None)
            raise
        self._watched[queue] = tag
        self._tags[tag] = queue

    # --- group_send ----------------------------------------------------------------------------
    def properties_for(self, group: str, headers: dict[str, Any], message_id: str) -> tuple[Any, Placement | None]:
        """Properties of a group_send's publish (the same on every attempt), and what this loop
        must do for its own members (None if none of its watched queues has members)."""
        watched = [queue for queue in self.book.queues_of(group) if self._watched.get(queue)]
        if not watched:
            return pika.BasicProperties(headers=headers, message_id=message_id), None
        numbered, placement = self.own_sends.begin(watched, headers)
        return pika.BasicProperties(headers=numbered, message_id=message_id), placement

    async def drain_ahead(self, placement: Placement) -> None:
        """Take what waits in the process queues in while the copy is on its way, not after it
        came (a round trip less per group_send). Done after the group_send was called, so it
        sees everything that happened before it; what comes in between is concurrent with it
        and may follow its copy. If it fails, the copy's fan-out takes them in itself.

        Awaited by the group_send just before it publishes: the first basic.get goes out in
        that very turn, with the publish. (Started as a task of its own, the get would go out
        only after every member the previous copy woke had run.) Its reply is settled in the
        callback that reads it (_settle_ahead), with the copy if that came first: an empty
        process queue, the common case, costs no task and no turn of the loop."""
        link = self.session.link
        if self._lock.locked() or link is None or not link.can_get_now():
            # A fan-out (or another get) is under way: a task waits for it, not the publish.
            self._spawn(self._drain_later(placement))
            return
        await self._lock.acquire()
        try:
            first = await link.begin_get(placement.queues[0], on_reply=self._on_ahead_reply)
        except Exception:  # noqa: BLE001 - the link broke: the fan-out takes them in
            self._lock.release()
            return
        except BaseException:
            self._lock.release()
            raise
        ahead = self._ahead = AheadGet(link, first, placement)
        ahead.timer = self.session.loop.call_later(self.session.shared.config.timeout, self._settle_ahead, ahead)
        first.add_done_callback(lambda _first: self._settle_ahead(ahead))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.session.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_ahead_reply(self) -> None:
        """The reply to the drain-ahead get, read just now: settled in this very callback."""
        if self._ahead is not None:
            self._settle_ahead(self._ahead)

    def _settle_ahead(self, ahead: AheadGet) -> None:
        """The first get's reply was read (or never came in time). An empty reply for the only
        queue settles the drain here, at once, and the copy that came with it or before it is
        placed at once too: no task, no turn of the loop. Anything else is for a task."""
        if self._ahead is not ahead:
            return
        self._ahead = None
        if ahead.timer is not None:
            ahead.timer.cancel()
        first, placement, copy = ahead.first, ahead.placement, ahead.copy
        if not first.done():  # no reply in time: the copy's fan-out takes the queues in itself
            ahead.link.release_get()
            self._lock.release()
        elif len(placement.queues) == 1 and not first.cancelled() and first.exception() is None and first.result() is None:
            ahead.link.release_get()
            self._drained.add(DrainMark(placement.queues[0], placement.sequence))
            self._lock.release()
        else:
            task = self._spawn(self._finish_drain(ahead))
            task.add_done_callback(lambda _task: self._unlock_unstarted(ahead))
        if copy is not None:
            self._hand(copy)

    def _unlock_unstarted(self, ahead: AheadGet) -> None:
        """If the drain's task was cancelled before it began (close()), give back what it held."""
        if ahead.started:
            return
        ahead.link.release_get()
        self._lock.release()

    async def _finish_drain(self, ahead: AheadGet) -> None:
        ahead.started = True
        try:
            await self._drain(ahead.placement, ahead.link, ahead.first)
        finally:
            self._lock.release()

    async def _drain_later(self, placement: Placement) -> None:
        async with self._lock:
            await self._drain(placement)

    async def _drain(self, placement: Placement, link: Link | None = None,
                     first: asyncio.Future[Any] | None = None) -> None:
        """Holding the lock: take each process queue in, and mark it for its copy's fan-out."""
        for index, queue in enumerate(placement.queues):
            try:
                await self._take_waiting(queue, first if index == 0 else None, link)
            except Exception:  # noqa: BLE001 - the link broke: the fan-out takes them in
                return
            self._drained.add(DrainMark(queue, placement.sequence))

    # --- fan-out -------------------------------------------------------------------------------
    def _on_copy(self, carrier: Any, method: Any, properties: Any, body: bytes) -> None:
        queue = self._tags.get(method.consumer_tag)
        if queue is None:
            carrier.basic_nack(method.delivery_tag, requeue=True)
            return
        copy = GroupCopy(carrier, queue, method, properties, body,
                         DrainMark(queue, self.own_sends.sequence_of(properties.headers or {})))
        ahead = self._ahead
        if ahead is not None:
            if ahead.first.done():  # its reply came in this very read, ahead of the copy
                self._settle_ahead(ahead)
            elif ahead.copy is None and copy.mark == DrainMark(ahead.placement.queues[0], ahead.placement.sequence):
                ahead.copy = copy  # its own group_send's, ahead of the get's reply: placed with it
                return
        self._hand(copy)

    def _hand(self, copy: GroupCopy) -> None:
        """Place ``copy`` now if its process queue was taken in already and no drain or fan-out
        holds the lock; else a task does. A copies queue's copies come one at a time (each
        consumer's window is one delivery, link.py), so no earlier copy of its members' is
        still to be placed."""
        if not self._lock.locked() and self._drained.take(copy.mark):
            self._place_copy(copy)
        else:
            self._spawn(self._fan_out(copy))

    async def _fan_out(self, copy: GroupCopy) -> None:
        async with self._lock:
            if not self._drained.take(copy.mark):
                try:
                    await self._take_waiting(copy.queue)
                except Exception:  # noqa: BLE001 - the link broke: the copy comes back (unacked)
                    return
            self._place_copy(copy)

    def _place_copy(self, copy: GroupCopy) -> None:
        """Hand a copy to this loop's members of its group, its process queue taken in."""
        carrier, queue, method, properties = copy.carrier, copy.queue, copy.method, copy.properties
        if self._tags.get(method.consumer_tag) != queue or not usable(carrier):
            return  # flushed or lost meanwhile
        if not self.receiver.seen.first_time(self.names.group_copies(queue), properties.message_id):
            carrier.basic_ack(method.delivery_tag)  # fanned out before a dropped connection
            return
        members = self.book.members(queue, self.names.group_of(method.routing_key))
        # The sender is told first, so it runs (its next publish goes out) before the members.
        self.own_sends.done(copy.mark.sequence)
        missed = self._place(queue, members, copy.body)
        carrier.basic_ack(method.delivery_tag)
        if missed:
            self._on_missed(missed)

    async def _take_waiting(self, queue: str, sent: asyncio.Future[Any] | None = None,
                            link: Link | None = None) -> None:
        """Take what waits in the process queue into this loop, so the copy's room is exact
        (``sent``: the first basic.get, already sent on ``link``)."""
        state = self.receiver.state_of(queue)
        if link is None:
            link = await self.session.get_link()
        took = set()
        got = await link.got(sent) if sent is not None else await link.get(queue)
        while got is not None:
            channel = self.names.delivered_to(queue, got.properties)
            if channel is not None and self.receiver.seen.first_time(channel, got.properties.message_id):
                state.parked.park(channel, Parked(got.body, None, None, time.monotonic()))
                took.add(channel)
            got = await link.get(queue)
        for channel in took:
            serve_acked(state, channel)

    def _place(self, queue: str, members: list[str], body: bytes) -> int:
        state = self.receiver.state_of(queue)
        room = self.session.shared.capacity_for(self.names.channel_of(queue)) - len(state.parked)
        missed = place_copy(state, room, members, body)
        self.receiver.windows.balance_soon(state)
        return missed

    # --- events --------------------------------------------------------------------------------
    def on_cancelled(self, tag: str) -> str | None:
        """The broker cancelled a copies consumer: a flush deleted the queue (or it expired).
        Returns the copies queue, if the consumer was this feed's."""
        queue = self._tags.pop(tag, None)
        if queue is None:
            return None
        self._copies_gone(queue)
        return self.names.group_copies(queue)

    def consumed(self) -> list[str]:
        return [self.names.group_copies(queue) for queue in self._tags.values()]

    def _copies_gone(self, queue: str) -> None:
        """The copies queue of ``queue`` is gone from a broker that kept its state: a flush (or
        its expiry) ended its memberships, and what was fanned out went with the flush."""
        self._watched.pop(queue, None)
        self.book.forget(queue)
        self.session.forget(self.names.group_copies(queue))
        state = self.receiver.queues.get(queue)
        if state is not None:
            state.parked = state.parked.keeping(unacked)

    def on_link_lost(self) -> None:
        self._tags.clear()
        self._watched.clear()
        self._drained.clear()

    def on_link(self) -> None:
        for queue in self.book.queues():
            self.watch_soon(queue)

    async def restore(self, link: Link, broker_kept_state: bool) -> None:
        """On every connect: if the broker lost its state, the copies queues and bindings of
        known members again (declare and bind are idempotent); if it kept it, a copies queue
        that is gone was flushed (by any process, maybe while no loop of ours listened)."""
        for queue in self.book.queues():
            copies = self.names.group_copies(queue)
            if broker_kept_state:
                if not await self.session.exists(link, copies):
                    self._copies_gone(queue)
                continue
            await link.admin("queue_declare", copies, durable=False, arguments=self.session.copies_arguments())
            for group in self.book.groups_of(queue):
                await link.admin("queue_bind", copies, GROUPS_EXCHANGE, routing_key=self.names.group_key(group))

    def watch_soon(self, queue: str) -> None:
        """A receive waits on ``queue`` on this loop: its copies are fed here too (a loop that
        added the memberships may be gone: async_to_sync makes a loop per call)."""
        if queue in self._watched or not self.book.has(queue):
            return
        self._watched[queue] = ""  # starting
        self._spawn(self._rewatch(queue))

    async def _rewatch(self, queue: str) -> None:
        """Consume the copies queue on this loop too. What the broker lost with its state the
        connect put back (restore); a copies queue gone since was flushed: its memberships end
        here too, never declared again (a consume that raced the flush comes back here)."""
        try:
            link = await self.session.get_link()
            if not await self.session.exists(link, self.names.group_copies(queue)):
                self._copies_gone(queue)
                return
            await self._watch(queue, starting=True)
        except Exception:  # noqa: BLE001 - broken again: the next on_link (or receive) tries again
            self._watched.pop(queue, None)

    def flushed(self) -> None:
        """flush() here: every copies queue is gone, and with it every membership."""
        self.book.forget_all()
        self._tags.clear()
        self._watched.clear()
        self._drained.clear()

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead.timer is not None:
                ahead.timer.cancel()
            ahead.link.release_get()
            self._lock.release()
        for task in self._tasks:
            task.cancel()
        self.own_sends.close()
