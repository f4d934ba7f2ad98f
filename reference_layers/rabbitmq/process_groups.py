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
import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

import pika

from .link import Link
from .missed_copies import SENDER_HEADER
from .names import GROUPS_EXCHANGE
from .queue_state import Parked, usable
from .receiving import Receiver
from .session import Session

SEQUENCE_HEADER = "asgi-group-send"  # sender-unique number: the owner waits for its copy
COPIES_LIMIT = 100_000
DRAINED_LIMIT = 1000  # drain-ahead marks kept at most (each used by its copy's fan-out)


@dataclass(frozen=True, slots=True)
class DrainMark:
    """A process queue taken in ahead of the copy of one of this object's group_sends."""

    queue: str
    sequence: int | None


class DrainMarks:
    """The drain-ahead marks whose copies have not come yet, oldest first.

    A mark whose copy never comes (a flush took it) would stay for ever: past DRAINED_LIMIT
    the oldest goes, which costs its copy, should it still come, one basic.get more.
    """

    def __init__(self, limit: int = DRAINED_LIMIT):
        self._limit = limit
        self._marks: dict[DrainMark, None] = {}  # insertion-ordered

    def add(self, mark: DrainMark) -> None:
        self._marks[mark] = None
        if len(self._marks) > self._limit:
            del self._marks[next(iter(self._marks))]

    def take(self, mark: DrainMark) -> bool:
        """True (and the mark gone) if its queue was taken in ahead."""
        return self._marks.pop(mark, False) is None

    def clear(self) -> None:
        self._marks.clear()


class LocalBook:
    """Group -> member channels (with deadlines) of each of this object's process queues."""

    def __init__(self) -> None:
        self._queues: dict[str, dict[str, dict[str, float]]] = {}

    def add(self, queue: str, group: str, channel: str, deadline: float) -> None:
        members = self._queues.setdefault(queue, {}).setdefault(group, {})
        members.pop(channel, None)  # re-added: to the end, as a new member
        members[channel] = deadline

    def discard(self, queue: str, group: str, channel: str) -> bool:
        """Remove it; True if the group has no member left in this queue."""
        members = self._queues.get(queue, {}).get(group)
        if members is None:
            return True
        members.pop(channel, None)
        if not members:
            del self._queues[queue][group]
            return True
        return False

    def members(self, queue: str, group: str) -> list[str]:
        """Live members, in the order they joined (a late receive finds its copy first)."""
        members = self._queues.get(queue, {}).get(group)
        if not members:
            return []
        now = time.monotonic()
        expired = [channel for channel, deadline in members.items() if deadline <= now]
        for channel in expired:
            del members[channel]
        return list(members)

    def queues_of(self, group: str) -> list[str]:
        return [queue for queue, groups in self._queues.items() if self.members(queue, group)]

    def groups_of(self, queue: str) -> list[str]:
        return list(self._queues.get(queue, {}))

    def queues(self) -> list[str]:
        return [queue for queue, groups in self._queues.items() if groups]

    def has(self, queue: str) -> bool:
        return bool(self._queues.get(queue))

    def forget(self, queue: str) -> None:
        self._queues.pop(queue, None)

    def forget_all(self) -> None:
        self._queues.clear()


class GroupFeed:
    """This loop's consumers on copies queues, and the fan-out of each copy they bring."""

    def __init__(self, session: Session, receiver: Receiver, book: LocalBook, sender: str,
                 on_missed: Callable[[int], None]):
        self.session = session
        self.receiver = receiver
        self.names = session.shared.names
        self.book = book
        self.sender = sender
        self._on_missed = on_missed
        self._tags: dict[str, str] = {}  # consumer tag -> process queue
        self._watched: dict[str, str] = {}  # process queue -> consumer tag ("" while starting)
        self._expected: dict[int, list[Any]] = {}  # sequence -> [future, copies still to come]
        self._drained = DrainMarks()  # process queues taken in ahead of their copy
        self._sequence = itertools.count(1)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        receiver.feed = self

    # --- memberships ---------------------------------------------------------------------------
    async def add(self, group: str, channel: str, group_expiry: float) -> None:
        queue = self.names.queue(channel)
        await self.session.ensure_queue(queue, channel)
        link = await self._ensure_copies(queue)
        await link.admin("queue_bind", self.names.group_copies(queue), GROUPS_EXCHANGE,
                         routing_key=self.names.group_key(group))
        self.book.add(queue, group, channel, time.monotonic() + group_expiry)
        await self._watch(queue)

    async def discard(self, group: str, channel: str) -> None:
        queue = self.names.queue(channel)
        if self.book.discard(queue, group, channel):
            link = await self.session.get_link()
            await link.admin("queue_unbind", self.names.group_copies(queue), GROUPS_EXCHANGE,
                             routing_key=self.names.group_key(group))

    async def _ensure_copies(self, queue: str, force: bool = False) -> Link:
        copies = self.names.group_copies(queue)
        expires = self.session.queue_arguments("")["x-expires"]

        async def declare(link: Link) -> None:
            await link.admin("queue_declare", copies, durable=False,
                             arguments={"x-max-length": COPIES_LIMIT, "x-expires": expires})
            await (await self.session.register(link, copies, expires))

        await self.session.ensure_queue(copies, "", force=force, declare=declare)
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
    def properties_for(self, group: str, headers: dict[str, Any], message_id: str,
                       ) -> tuple[Any, asyncio.Future[None] | None]:
        """Properties of a group_send's publish (the same on every attempt), and a future done
        once this loop fanned out its copies (None if none of its watched queues has members)."""
        watched = [queue for queue in self.book.queues_of(group) if self._watched.get(queue)]
        if not watched:
            return pika.BasicProperties(headers=headers, message_id=message_id), None
        sequence = next(self._sequence)
        future: asyncio.Future[None] = self.session.loop.create_future()
        self._expected[sequence] = [future, len(watched)]
        self._drain_ahead(sequence, watched)
        return pika.BasicProperties(headers={**headers, SEQUENCE_HEADER: sequence}, message_id=message_id), future

    def _drain_ahead(self, sequence: int, queues: list[str]) -> None:
        """Take what waits in the process queues in while the copy is on its way, not after it
        came (a round trip less per group_send). Done after the group_send was called, so it
        sees everything that happened before it; what comes in between is concurrent with it
        and may follow its copy. If it fails, the copy's fan-out takes them in itself."""
        async def drain() -> None:
            async with self._lock:
                for queue in queues:
                    try:
                        await self._take_waiting(queue)
                    except Exception:  # noqa: BLE001 - the link broke: the fan-out takes them in
                        return
                    self._drained.add(DrainMark(queue, sequence))

        task = self.session.loop.create_task(drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def placed(self, future: asyncio.Future[None]) -> None:
        """Wait for this loop's copies to be fanned out; past the timeout its copy went astray
        (a flush raced it): nothing more to wait for. The future is awaited as it is, with no
        wrapper, so the sender wakes up in the very turn its copy is placed."""
        timer = self.session.loop.call_later(self.session.shared.config.timeout, _give_up, future)
        try:
            await future
        finally:
            timer.cancel()

    # --- fan-out -------------------------------------------------------------------------------
    def _on_copy(self, carrier: Any, method: Any, properties: Any, body: bytes) -> None:
        queue = self._tags.get(method.consumer_tag)
        if queue is None:
            carrier.basic_nack(method.delivery_tag, requeue=True)
            return
        task = self.session.loop.create_task(self._fan_out(carrier, queue, method, properties, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fan_out(self, carrier: Any, queue: str, method: Any, properties: Any, body: bytes) -> None:
        async with self._lock:
            if not self._drained.take(DrainMark(queue, self._sequence_of(properties.headers or {}))):
                try:
                    await self._take_waiting(queue)
                except Exception:  # noqa: BLE001 - the link broke: the copy comes back (unacked)
                    return
            if self._tags.get(method.consumer_tag) != queue or not usable(carrier):
                return  # flushed or lost meanwhile
            if not self.receiver.seen.first_time(self.names.group_copies(queue), properties.message_id):
                carrier.basic_ack(method.delivery_tag)  # fanned out before a dropped connection
                return
            members = self.book.members(queue, self.names.group_of(method.routing_key))
            # The sender is told first, so it runs (its next publish goes out) before the members.
            self._done(properties.headers or {})
            missed = self._place(queue, members, body)
            carrier.basic_ack(method.delivery_tag)
        if missed:
            self._on_missed(missed)

    async def _take_waiting(self, queue: str) -> None:
        """Take what waits in the process queue into this loop, so the copy's room is exact."""
        state = self.receiver.state_of(queue)
        link = await self.session.get_link()
        took = set()
        while (got := await link.get(queue)) is not None:
            channel = self.receiver.channel_of(queue, got.properties)
            if channel is not None and self.receiver.seen.first_time(channel, got.properties.message_id):
                state.parked.append(Parked(channel, got.body, None, None, time.monotonic()))
                took.add(channel)
        for channel in took:
            self._serve(state, channel)

    def _serve(self, state: Any, channel: str) -> None:
        while state.waiters.get(channel):
            entry = next((each for each in state.parked if each.channel == channel and each.tag is None), None)
            if entry is None:
                return
            future = self.receiver.take_waiter(state, channel)
            if future is None:
                return
            state.parked.remove(entry)
            future.set_result(entry.body)

    def _place(self, queue: str, members: list[str], body: bytes) -> int:
        state = self.receiver.state_of(queue)
        room = self.session.shared.capacity_for(self.names.channel_of(queue)) - len(state.parked)
        missed, now = 0, time.monotonic()
        for channel in members:
            if room <= 0:
                missed += 1
                continue
            future = self.receiver.take_waiter(state, channel)
            if future is not None:
                future.set_result(body)
            else:
                state.parked.append(Parked(channel, body, None, None, now))
                room -= 1
        self.receiver.windows.balance_soon(state)
        return missed

    def _sequence_of(self, headers: dict[str, Any]) -> int | None:
        """The sequence of a copy of this object's own group_send (None for anyone else's)."""
        if headers.get(SENDER_HEADER) not in (self.sender, self.sender.encode()):
            return None
        sequence = headers.get(SEQUENCE_HEADER)
        return sequence if isinstance(sequence, int) else None

    def _done(self, headers: dict[str, Any]) -> None:
        sequence = self._sequence_of(headers)
        if sequence is None:
            return
        expected = self._expected.get(sequence)
        if expected is None:
            return
        expected[1] -= 1
        if expected[1] <= 0:
            del self._expected[sequence]
            if not expected[0].done():
                expected[0].set_result(None)

    # --- events --------------------------------------------------------------------------------
    def on_cancelled(self, tag: str) -> bool:
        """The broker cancelled a copies consumer: a flush deleted the queue (or it expired)."""
        queue = self._tags.pop(tag, None)
        if queue is None:
            return False
        self._watched.pop(queue, None)
        self.book.forget(queue)
        self.session.forget(self.names.group_copies(queue))
        state = self.receiver.queues.get(queue)
        if state is not None:  # what was fanned out went with the flush
            state.parked = type(state.parked)(entry for entry in state.parked if entry.tag is not None)
        return True

    def on_link_lost(self) -> None:
        self._tags.clear()
        self._watched.clear()
        self._drained.clear()

    def on_link(self) -> None:
        for queue in self.book.queues():
            self.watch_soon(queue)

    async def restore(self, link: Link) -> None:
        """On every connect: the copies queues and bindings of known members, in case the broker
        lost them with its state (declare and bind are idempotent)."""
        expires = self.session.queue_arguments("")["x-expires"]
        for queue in self.book.queues():
            copies = self.names.group_copies(queue)
            await link.admin("queue_declare", copies, durable=False,
                             arguments={"x-max-length": COPIES_LIMIT, "x-expires": expires})
            for group in self.book.groups_of(queue):
                await link.admin("queue_bind", copies, GROUPS_EXCHANGE, routing_key=self.names.group_key(group))

    def watch_soon(self, queue: str) -> None:
        """A receive waits on ``queue`` on this loop: its copies are fed here too (a loop that
        added the memberships may be gone: async_to_sync makes a loop per call)."""
        if queue in self._watched or not self.book.has(queue):
            return
        self._watched[queue] = ""  # starting
        task = self.session.loop.create_task(self._rewatch(queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rewatch(self, queue: str) -> None:
        """Connected again: the copies queue and its bindings may be gone with the broker's state."""
        try:
            link = await self._ensure_copies(queue, force=True)
            for group in self.book.groups_of(queue):
                await link.admin("queue_bind", self.names.group_copies(queue), GROUPS_EXCHANGE,
                                 routing_key=self.names.group_key(group))
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
        for task in self._tasks:
            task.cancel()
        for _sequence, (future, _left) in self._expected.items():
            if not future.done():
                future.set_result(None)
        self._expected.clear()


def _give_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
