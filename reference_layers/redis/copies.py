"""Group copies for a process's own members: one inbox entry per group_send, fanned out here.

A group_send puts one entry in a process's inbox (``P:i:K``, scripts.py) for all of its
``p!*`` members that have room; each copy counts against the process's shared capacity
(CAP-4), the entry's copies counted together. A pop drains the whole inbox in the same atomic step and marks each copy:
taken for a receiver waiting now, held here for a receive to come, or put in the member's own
queue because older messages wait there. This module reads a pop's reply; shelf.py keeps the
held copies, per event loop (a ``CopyShelf``), oldest first per channel; pops.py awaits a pop.

A loop where a receive of the process waits takes the entry in one hop instead, published to
it by the group_send itself (deliveries.py); read as a pop of that entry (``read_delivery``).

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
held copies and messages read ahead belong to the event loop whose pop (or delivery) took them,
and another process's statistics() does not see them; a process that dies holding them loses
them, like any message a receive had taken. A loop that ends (every ``asyncio.run``, every ``async_to_sync`` call)
pushes both back to the head of their members' queues, counted there again.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Container

READ_AHEAD = 64  # messages a pop takes beyond what waiting receivers want, for process channels
_FEW_WANTED = 8  # channels a pop wants, at most, for a fan-out's entry to be held as one


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


@dataclass(slots=True, eq=False)  # eq=False: hashed by identity (a shelf keeps a set of them)
class HeldEntry:
    """One inbox entry's copies held for many members at once: a late fan-out (no receive
    waited), where a Copy per member cost more than their receives. ``members``: the entry's
    whole roster, in id order (member i's copy has id ``first_id + i``); ``held``: those of them
    held here (the rest were handed to receives waiting)."""

    members: list[str]
    held: list[str]
    capacity_key: str
    first_id: int
    deadline: float
    expires: bytes
    body: bytes
    epoch: int
    left: int = 0  # members whose copy the shelf still holds by this entry
    _ids: dict[str, int] | None = field(default=None, repr=False)

    def copy_for(self, channel: str) -> Copy:
        """``channel``'s copy as a Copy of its own (the rare paths: put back, served to a waiter,
        behind an older copy)."""
        if self._ids is None:
            self._ids = {name: index for index, name in enumerate(self.members)}
        return Copy(channel, self.capacity_key, self.first_id + self._ids[channel], self.deadline, self.expires,
                    self.body, Counted.HERE, self.epoch)


def queued_entry(expires: bytes, message_id: int, body: bytes) -> bytes:
    """``<expires>:<id>:<body>``, a message as a member's queue holds it (and a pop returns it)."""
    return b"%s:%d:%s" % (expires, message_id, body)


@dataclass(frozen=True)
class PopReply:
    last_id: int  # the bell's last id when the pop ran
    epoch: int  # the shard's flush epoch when it ran (flushes.py)
    messages: list[tuple[str, bytes]]  # (channel, entry) for waiting receivers, oldest first per channel
    held: list[Copy | HeldEntry]  # for receives to come, in the order the pop took them

    def held_channels(self) -> list[str]:
        return [name for item in self.held
                for name in (item.held if type(item) is HeldEntry else (item.channel,))]  # type: ignore[union-attr]


_last_rosters: dict[str, tuple[bytes, list[str]]] = {}  # capacity key -> its latest roster, read


def _member_names(capacity_key: str, roster: bytes) -> list[str]:
    """An entry's members, whole names from its roster of local names. A process's rosters come
    again and again (a room's every message): read once, the list shared (never changed). The
    latest one is compared, not hashed: a roster of 1,000 members is 10 KB to hash, each time."""
    last = _last_rosters.get(capacity_key)
    if last is not None and last[0] == roster:
        return last[1]
    names = _read_roster(capacity_key, roster)
    _last_rosters[capacity_key] = (roster, names)
    return names


@functools.lru_cache(maxsize=8)
def _read_roster(capacity_key: str, roster: bytes) -> list[str]:
    return [capacity_key + name for name in roster.decode().split(",")]


def _positions(names: list[str], channels: list[str]) -> list[tuple[int, str]]:
    """(position in ``names``, channel) of those of a few ``channels`` listed there, in order."""
    found = []
    for channel in channels:
        try:
            found.append((names.index(channel), channel))
        except ValueError:
            continue
    found.sort()
    return found


def read_pop(reply: list, wanted: dict[str, int], capacity_key: str, loop_now: float,
             shelved: Container[str] = ()) -> PopReply:
    """POP's reply (scripts.py) as a PopReply. ``wanted``: what the pop asked for, per channel (an
    entry without marks is read by it, as the server did); ``loop_now``: the loop's time at the
    reply; ``shelved``: the channels copies are held here for already, so what the pop took for
    one is held behind them (older first), not handed past them. A fan-out's entry lists hundreds
    of members: held for receives to come, it is one HeldEntry, not a Copy each."""
    now_ms, last_id, epoch, entries = int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3])
    messages: list[tuple[str, bytes]] = []
    held: list[Copy | HeldEntry] = []
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
        names = _member_names(capacity_key, members)
        if not marks:  # the server read no queue: a member is taken while its receivers want more
            if len(left) > _FEW_WANTED:  # most members wait (or waited, for an older entry)
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
            kept, start = [], 0  # the members held: all but those handed to a receive waiting now
            for position, channel in _positions(names, [channel for channel, count in left.items() if count > 0]):
                left[channel] -= 1
                if channel not in shelved:
                    messages.append((channel, b"%s%d%s" % (head, message_id + position, tail)))
                    kept += names[start:position]
                    start = position + 1
            members = kept + names[start:] if start else names
            if members:
                held.append(HeldEntry(names, members, capacity_key, message_id, deadline, expires, body, epoch))
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


def read_delivery(payload: bytes, capacity_key: str, loop_now: float, shelved: Container[str] = (),
                  wanted: dict[str, int] | None = None) -> PopReply:
    """A delivery (``<now_ms>:<epoch>:<entry>``, deliveries.py) read as the reply of a pop that
    drained its entry for ``wanted``."""
    now_ms, epoch, entry = payload.split(b":", 2)
    return read_pop([now_ms, 0, epoch, 1, entry, b""], wanted or {}, capacity_key, loop_now, shelved)
