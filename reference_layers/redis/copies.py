"""Group copies for a process's own members: one inbox entry per group_send, fanned out here.

A group_send puts one entry in a process's inbox (``P:i:K``, scripts.py) for all of its
``p!*`` members that have room; each copy counts against the process's shared capacity
(CAP-4), the entry's copies counted together. A pop drains the whole inbox in the same atomic step and marks each copy:
taken for a receiver waiting now, held here for a receive to come, or put in the member's own
queue because older messages wait there. This module reads a pop's reply and keeps the held
copies, per event loop (a :class:`CopyShelf`), oldest first per channel.

Why hold them here: members that call receive() one after another (a consumer busy with the
previous message) then read their copies without a round trip each. The pop uncounts every
copy it drains on the server; the copies held here count against capacity in what this
process asks the server (a send or group_send passes the room left after them, so the owner's
own calls see exactly the room the spec says); each is dropped when it expires. Ordering holds
because a copy is held only when its member's queue has nothing older, and a receive looks
here first.

Messages read ahead: a pop for a process's own channels (``p!*``, which only this process
receives) also takes up to ``READ_AHEAD`` more messages waiting in a wanted queue, so receives one
after another read them here instead of one round trip each. Unlike group copies these stay
counted on the server (``Counted.BY_SERVER``): every sender, in any process, sees exact room;
the receive that takes one uncounts it there (``ZREM``, written at once on this loop's
connection, so a send that follows finds the room). An uncount lost with the connection is made
first on the next one (shard.py); until then the id stays counted.

A flush in any process reaches them: each copy carries the flush epoch its pop ran in, and the
loop drops those of an older one when it hears of a flush (flushes.py).

Limits, like any process-local buffer (channels_redis's included): a sender in another process
is judged by the server without the group copies held here (not so for messages read ahead);
held copies and messages read ahead belong to the event loop whose pop took them, and another
process's statistics() does not see them; a process that dies holding them loses them, like any
message a receive had taken (a closing loop pushes messages read ahead back).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from typing import Callable, Collection, Protocol

READ_AHEAD = 64  # messages a pop takes beyond what waiting receivers want, for process channels


class Flushes(Protocol):
    """A capacity key's flush epoch as this loop knows it (flushes.FlushWatch, or Unwatched)."""

    def admits(self, epoch: int) -> bool: ...

    def current_at(self, now: float) -> bool: ...


class Counted(enum.Enum):
    """Who counts a held copy against its capacity key."""

    HERE = enum.auto()  # the server uncounted it: this loop's calls pass the room left after it
    BY_SERVER = enum.auto()  # a message read ahead, still counted there: taking it uncounts it


class Mark(bytes, enum.Enum):
    """What a pop did with one member's copy (one letter per member in the reply)."""

    TAKEN = b"t"  # for a receiver waiting now
    HELD = b"h"  # for a receive to come, held by the process
    QUEUED = b"q"  # put in the member's queue behind older messages; popped from there


_HELD, _TAKEN, _QUEUED = Mark.HELD.value[0], Mark.TAKEN.value[0], Mark.QUEUED.value[0]


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to make, and a fan-out makes thousands
class Copy:
    channel: str
    capacity_key: str
    message_id: int  # ids of one capacity key grow with time: the order to put copies back in
    deadline: float  # event loop time when it expires
    expires: bytes  # the server's expiry stamp (ms)
    body: bytes
    counted: Counted = Counted.HERE
    epoch: int = 0  # the shard's flush epoch when the pop took it (flushes.py)

    @property
    def entry(self) -> bytes:
        return queued_entry(self.expires, self.message_id, self.body)


def queued_entry(expires: bytes, message_id: int, body: bytes) -> bytes:
    """``<expires>:<id>:<body>``, a message as a member's queue holds it (and a pop returns it)."""
    return b"%s:%d:%s" % (expires, message_id, body)


@dataclass(frozen=True)
class PopReply:
    last_id: int  # the bell's last id when the pop ran
    epoch: int  # the shard's flush epoch when it ran (flushes.py)
    messages: list[tuple[str, bytes]]  # (channel, entry) for waiting receivers, oldest first per channel
    held: list[Copy]  # for receives to come


def read_pop(reply: list, wanted: dict[str, int], capacity_key: str, loop_now: float,
             shelved: Collection[str] = ()) -> PopReply:
    """POP's reply (scripts.py) as a PopReply. ``wanted``: what the pop asked for, per channel (an
    entry without marks is read by it, as the server did); ``loop_now``: the loop's time at the
    reply; ``shelved``: the channels copies are held here for already, so what the pop took for
    one is held behind them (older first), not handed past them. A fan-out's entry lists hundreds
    of members: its loop is kept lean."""
    now_ms, last_id, epoch, entries = int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3])
    messages: list[tuple[str, bytes]] = []
    held: list[Copy] = []
    left = dict(wanted)
    wants = left.get
    here = Counted.HERE
    place = 4
    for _ in range(entries):
        entry, marks = reply[place], reply[place + 1]
        place += 2
        expires, first, members, body = entry.split(b":", 3)
        deadline = loop_now + (int(expires) - now_ms) / 1000
        message_id = int(first.partition(b"+")[0])  # '<first id>+<copies>' (an older version: '<first id>')
        head = b"%s:" % expires
        tail = b":" + body
        names = [capacity_key + name for name in members.decode().split(",")]  # local names, decoded once
        if not marks:  # the server read no queue: a member is taken while its receivers want more
            for channel in names:
                if wants(channel):
                    left[channel] -= 1
                    if channel not in shelved:
                        messages.append((channel, b"%s%d%s" % (head, message_id, tail)))
                        message_id += 1
                        continue
                held.append(Copy(channel, capacity_key, message_id, deadline, expires, body, here, epoch))
                message_id += 1
            continue
        for channel, mark in zip(names, marks):
            if mark == _TAKEN:
                left[channel] -= 1
                if channel not in shelved:
                    messages.append((channel, b"%s%d%s" % (head, message_id, tail)))
                    message_id += 1
                    continue
            if mark != _QUEUED:
                held.append(Copy(channel, capacity_key, message_id, deadline, expires, body, here, epoch))
            message_id += 1
    channels = list(wanted)
    for i in range(place, len(reply), 2):
        index, entry = reply[i], reply[i + 1]
        channel = channels[abs(index) - 1]
        if index > 0 and channel not in shelved:
            messages.append((channel, entry))
            continue
        expires, message_id, body = entry.split(b":", 2)
        held.append(Copy(channel, capacity_key, int(message_id), loop_now + (int(expires) - now_ms) / 1000,
                         expires, body, here if index > 0 else Counted.BY_SERVER, epoch))
    return PopReply(last_id, epoch, messages, held)


class CopyShelf:
    """The copies one event loop holds for its channels, oldest first per channel.

    ``uncount(copy)`` is called for each copy counted by the server that ``take`` gives out;
    ``clock``: the event loop's time (the copies' deadlines are in it). The copies held are
    of this process's own capacity keys (``p!``), a few at most: what counts per key is found
    by looking at every channel held, with no index to keep up on each take."""

    def __init__(self, uncount: Callable[[Copy], None], clock: Callable[[], float]) -> None:
        self._held: dict[str, deque[Copy]] = {}
        self._current: dict[str, Callable[[float], bool]] = {}  # capacity key -> are its flushes heard at this time
        self._uncount = uncount
        self._clock = clock
        self._counted_here = 0  # copies of Counted.HERE held: none, and no send needs to look

    def __bool__(self) -> bool:
        return bool(self._held)

    def holds(self, channel: str) -> bool:
        return channel in self._held

    @property
    def channels_held(self) -> Collection[str]:
        """The channels with copies here (a live view: ``channel in`` it, with no call)."""
        return self._held.keys()

    def put(self, copies: list[Copy], current: Callable[[float], bool]) -> None:
        """Hold ``copies``, a pop's, so of one capacity key (a fan-out puts hundreds at once: this
        loop is kept lean). ``current``: whether the flushes of that key are heard at a given loop
        time (flushes.py), for ``take_ready``."""
        if not copies:
            return
        self._current[copies[0].capacity_key] = current
        held, here = self._held, 0
        for copy in copies:
            queue = held.get(copy.channel)
            if queue is None:
                held[copy.channel] = deque((copy,))
            else:
                queue.append(copy)
            if copy.counted is Counted.HERE:
                here += 1
        self._counted_here += here

    def take(self, channel: str, now: float) -> Copy | None:
        """The oldest unexpired copy for ``channel`` (dropping expired ones), or None. It is
        uncounted on the server now if the server counted it."""
        held = self._held
        queue = held.get(channel)
        while queue:
            copy = queue.popleft()
            if not queue:
                del held[channel]
            if copy.counted is Counted.HERE:
                self._counted_here -= 1
            elif copy.deadline > now:
                self._uncount(copy)
                return copy
            if copy.deadline > now:
                return copy
        return None

    def take_ready(self, channel: str) -> Copy | None:
        """``take`` now, if the flushes of the copy's capacity key are heard (so no flush came
        since its pop); else None, taking nothing: the caller listens first, then takes. Members
        receiving one after another come here once each, with no coroutine of their own: the
        common case (an unexpired group copy) is taken in this one call."""
        queue = self._held.get(channel)
        if not queue:
            return None
        copy = queue[0]
        current = self._current.get(copy.capacity_key)
        now = self._clock()
        if current is None or not current(now):
            return None
        if copy.deadline <= now or copy.counted is not Counted.HERE:
            return self.take(channel, now)  # expired ones dropped, one read ahead uncounted
        queue.popleft()
        self._counted_here -= 1
        if not queue:
            del self._held[channel]
        return copy

    def restore(self, copy: Copy) -> None:
        """Put back a copy ``take`` gave that found no taker, at the head again (uncounted on
        the server by then: this loop counts it)."""
        copy.counted = Counted.HERE
        self._counted_here += 1
        queue = self._held.get(copy.channel)
        if queue is None:
            queue = self._held[copy.channel] = deque()
        queue.appendleft(copy)

    def take_all(self, channel: str) -> list[Copy]:
        """Every copy for ``channel``, to push back to its queue (which counts them all again)."""
        queue = self._held.pop(channel, None)
        if not queue:
            return []
        self._counted_here -= sum(1 for copy in queue if copy.counted is Counted.HERE)
        return list(queue)

    def drop(self, doomed: Callable[[Copy], bool]) -> None:
        """Forget every copy ``doomed`` names (a flush reached them: no count to give back)."""
        for channel, queue in list(self._held.items()):
            kept = deque(copy for copy in queue if not doomed(copy))
            if len(kept) == len(queue):
                continue
            self._counted_here -= sum(1 for copy in queue if copy.counted is Counted.HERE) \
                - sum(1 for copy in kept if copy.counted is Counted.HERE)
            if kept:
                self._held[channel] = kept
            else:
                del self._held[channel]

    def take_everything(self) -> list[Copy]:
        """Every copy held, oldest first per channel: for a closing loop to push back."""
        return [copy for channel in list(self._held) for copy in self.take_all(channel)]

    def held_for(self, capacity_key: str, now: float) -> int:
        """Unexpired copies held for the channels of ``capacity_key`` that the server does not
        count (they count against it)."""
        return self.held_keys(now).get(capacity_key, 0)

    def held_keys(self, now: float) -> dict[str, int]:
        """Capacity key -> its unexpired copies held here and counted here, for the keys with any
        (expired ones are dropped on the way)."""
        if not self._counted_here:
            return {}
        counts: dict[str, int] = {}
        for channel, queue in list(self._held.items()):
            while queue and queue[0].deadline <= now:  # deadlines grow along a queue
                expired = queue.popleft()
                if expired.counted is Counted.HERE:
                    self._counted_here -= 1
            if not queue:
                del self._held[channel]
                continue
            here = sum(1 for copy in queue if copy.counted is Counted.HERE)
            if here:
                key = queue[0].capacity_key
                counts[key] = counts.get(key, 0) + here
        return counts

    def waiting(self, channel: str, now: float) -> tuple[int, float | None]:
        """(unexpired copies held for ``channel``, the oldest one's deadline)."""
        live = [copy.deadline for copy in self._held.get(channel, ()) if copy.deadline > now]
        return len(live), (live[0] if live else None)

    def channels(self) -> list[str]:
        return list(self._held)

    def clear(self) -> None:
        self._held.clear()
        self._current.clear()
        self._counted_here = 0


class Pop:
    """A pop on the wire. Its reply is read, and its held copies shelved, as soon as it arrives:
    in a callback, not in the task awaiting it, because pops of one connection reply in order,
    so copies are shelved in the order the server drained them, before a later pop's messages
    are handed to anyone. ``ready`` is that read reply; awaiting it (not the reply itself) lets a
    cancelled awaiter still collect what the pop took, with ``collect``."""

    def __init__(self, raw: asyncio.Future, wanted: dict[str, int], capacity_key: str, shelf: CopyShelf,
                 flushes: Flushes):
        self._raw = raw
        self._flushes = flushes  # may what a pop of this flush epoch left held be kept (flushes.py)
        self.wanted = wanted
        self._capacity_key = capacity_key
        self._shelf = shelf
        self._loop = asyncio.get_running_loop()
        self._read: PopReply | BaseException | None = None
        self.ready: asyncio.Future = self._loop.create_future()
        raw.add_done_callback(self._settle)

    def _settle(self, raw: asyncio.Future) -> None:
        if self._read is None:
            if raw.cancelled():
                self._read = asyncio.CancelledError()
            elif (error := raw.exception()) is not None:
                self._read = error
            else:
                try:
                    self._read = read_pop(raw.result(), self.wanted, self._capacity_key, self._loop.time(),
                                          self._shelf.channels_held)
                except Exception as exc:  # noqa: BLE001 - an unreadable reply: the awaiter hears of it
                    self._read = exc
                else:
                    if self._flushes.admits(self._read.epoch):  # else a flush came after the pop: dropped
                        self._shelf.put(self._read.held, self._flushes.current_at)
        if not self.ready.done():
            if isinstance(self._read, BaseException):
                self.ready.set_exception(self._read)
            else:
                self.ready.set_result(self._read)

    async def collect(self) -> PopReply:
        """The read reply, for an awaiter of ``ready`` that was cancelled: what the pop took must
        not be lost with it."""
        try:
            await self._raw
        except BaseException:  # noqa: BLE001 - the error is the read reply's, raised below
            pass
        self._settle(self._raw)
        if isinstance(self._read, BaseException):
            raise self._read
        assert self._read is not None
        return self._read
