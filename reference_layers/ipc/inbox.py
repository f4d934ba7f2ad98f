"""A process's inbox: one copy of a group_send for all of its ``p!*`` members, on its counter.

Why: a group_send used to queue a copy in every member's channel, each a locked step's worth
of work done by the sender while every process waited on the lock: for 1,000 members over 4
processes, about 1.5 ms of the sender's time per group_send. Now it writes one message per
receiving process (a few, for a large one: ``BATCH`` names each) on the process's ``p!``
counter entry, its inbox (fields A first, B last), naming the members it is for by their local
names (``x`` for ``p!x``). The counter counts each copy (C += members), so the process's
shared capacity (CAP-4) is exact at once.

The process takes its inbox apart (``take_first``) in the locked step where it first touches
one of its channels after the group_send: a copy for a member with nothing queued goes to the
owner's shelf (``shelf.py``: its receive then takes it without the lock), any other into the
member's queue, behind the older messages there. Every step that sends to or receives from a
``p!*`` channel whose counter has an inbox is the general path's (the C core and the hot path
answer NOT_HANDLED): a receive takes the inbox apart first; a send (any process's) puts every
copy into its member's queue first (``tag`` None), so a direct message never overtakes an older
group copy (CHAN-1). An inbox message is one transaction to take apart: ``BATCH`` copies fit
the journal, each creating its member's channel at worst. A group_send to the sender's own
members writes no inbox: one copy each, in C, is what one process's receives take cheapest.

An inbox message is a message (messages.py) whose bytes are the local names, apart by a space
(in no channel name), a NUL, then the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from . import layout as L
from .journal import F64, U32, Transaction
from .messages import alloc_chunks, chunks_for, free_message, read_message, write_message

BATCH = 256  # members named by one inbox message: taking it apart stays one transaction that fits the journal
SEPARATOR = b" "
END_OF_NAMES = b"\0"


class Store(Protocol):
    """What this module uses of store.Store (which calls it: no import back)."""

    layout: L.Layout
    segment_name: str

    def find(self, tx: Transaction, kind: int, name: bytes) -> int: ...

    def create_hashed(self, tx: Transaction, kind: int, name: bytes, bucket: int | None = None) -> int: ...

    def delete_hashed(self, tx: Transaction, index: int, bucket: int | None = None) -> None: ...

    def create_channel(self, tx: Transaction, channel: bytes) -> int: ...


@dataclass(frozen=True, slots=True)
class Shelved:
    """The copies of one inbox message taken out for the owner's shelf: one body, many members."""

    counter: bytes  # their process's 'p!'
    channels: list[bytes]
    data: bytes
    expires: float


def split(message: bytes) -> tuple[list[bytes], bytes]:
    end = message.index(END_OF_NAMES)
    return message[:end].split(SEPARATOR), message[end + 1:]


def push(store: Store, tx: Transaction, counter: bytes, channels: list[bytes], data: bytes, expires: float) -> None:
    """Queue one copy of ``data`` for each of ``channels`` (all ``counter``'s, at most BATCH) in
    the counter's inbox, counted against its capacity; raises SegmentFull having changed nothing."""
    # local names: every occurrence of counter (it holds the one '!') is a member's start
    body = SEPARATOR.join(channels).replace(counter, b"") + END_OF_NAMES + data
    index = store.find(tx, L.KIND_COUNTER, counter) or store.create_hashed(tx, L.KIND_COUNTER, counter)
    _append(store, tx, index, body, expires, len(channels))


def pending(store: Store, tx: Transaction, channel: bytes) -> int:
    """The counter entry of ``channel``'s process if its inbox holds a message, else 0."""
    bang = channel.find(b"!")
    if bang < 0:
        return L.NIL
    index = store.find(tx, L.KIND_COUNTER, channel[:bang + 1])
    return index if index and tx.u32(store.layout.entry(index) + L.E_A) else L.NIL


def take_first(store: Store, tx: Transaction, counter_index: int, now: float, tag: bytes | None) -> Shelved | None:
    """Take the inbox's first message apart (the caller commits; one per transaction): each copy
    into its member's queue, or returned for the caller's shelf (then no longer counted) when
    the member has nothing queued and is the caller's: its local name has the caller's ``tag``
    (``mine``). Expired copies are dropped."""
    layout = store.layout
    off = layout.entry(counter_index)
    counter = tx.name(off)
    message = tx.u32(off + L.E_A)
    head = layout.chunk(message)
    expires = F64.unpack_from(tx.mem, head + L.M_EXPIRES)[0]
    body = read_message(tx, layout, message)
    end = body.index(END_OF_NAMES)
    names, data = body[:end].split(SEPARATOR), body[end + 1:]
    shelved: list[bytes] = []
    if expires > now:
        # Only a sibling channel can have something queued: one walk, not a lookup a member; and
        # none has when this message's copies are all the counter counts.
        queued = None if tag is None else set() if tx.u32(off + L.E_C) == len(names) else {
            name for index, name in siblings(tx.mem, layout, counter_index) if tx.u32(layout.entry(index) + L.E_A)}
        if tag == b"" and not queued and b"-" not in body[:end]:  # all of them: the common case
            shelved = [counter + name for name in names]
        else:
            for name in names:
                channel = counter + name
                if queued is not None and channel not in queued and mine(tag, name):
                    shelved.append(channel)
                else:
                    index = store.find(tx, L.KIND_CHANNEL, channel) or store.create_channel(tx, channel)
                    _append(store, tx, index, data, expires, 1)
    uncounted = len(shelved) if expires > now else len(names)
    following = tx.u32(head + L.M_NEXT)
    tx.set_u32(off + L.E_A, following)
    if not following:
        tx.set_u32(off + L.E_B, L.NIL)
    tx.set_u32(off + L.E_C, tx.u32(off + L.E_C) - uncounted)
    free_message(tx, layout, message)  # after every copy's chunks were taken (alloc_chunks asks so)
    delete_if_unused(store, tx, counter_index)
    return Shelved(counter, shelved, data, expires) if shelved else None


def mine(tag: bytes | None, local: bytes) -> bool:
    """Whether local name ``local`` was made by the process whose names carry ``tag``
    (core.names.ChannelNamer.local_tag: a forked child shares its parent's counter, not its
    names; b"": the first process's names, which have no '-'; None: none)."""
    if tag is None:
        return False
    return local.startswith(tag) if tag else b"-" not in local


def siblings(mem, layout: L.Layout, counter_index: int) -> Iterator[tuple[int, bytes]]:
    """(entry, name) of the channels of counter ``counter_index``'s process, read straight from
    memory (the caller holds the lock and has written nothing yet); bounded."""
    index = U32.unpack_from(mem, layout.entry(counter_index) + L.E_D)[0]
    for _ in range(layout.n_entries):
        if not index:
            return
        off = layout.entry(index)
        yield index, bytes(mem[off + L.E_NAME:off + L.E_NAME + mem[off + L.E_NAMELEN]])
        index = U32.unpack_from(mem, off + L.E_D)[0]


def _append(store: Store, tx: Transaction, index: int, body: bytes, expires: float, copies: int) -> None:
    """Append a message of ``body`` to the list of entry ``index`` (A first, B last), counting
    ``copies`` more in its C: a counter's inbox, or a channel's queue (one copy; its counter
    counts it already, as an inbox copy)."""
    layout = store.layout
    chunks, _ = alloc_chunks(tx, layout, chunks_for(len(body)), store.segment_name)
    message = write_message(tx, layout, chunks, body, expires)
    off = layout.entry(index)
    tail = tx.u32(off + L.E_B)
    if tail:
        tx.set_u32(layout.chunk(tail) + L.M_NEXT, message)
    else:
        tx.set_u32(off + L.E_A, message)
    tx.set_u32(off + L.E_B, message)
    tx.set_u32(off + L.E_C, tx.u32(off + L.E_C) + copies)


def delete_if_unused(store: Store, tx: Transaction, counter_index: int) -> None:
    """A counter lives while it has sibling channels or an inbox."""
    off = store.layout.entry(counter_index)
    if not tx.u32(off + L.E_D) and not tx.u32(off + L.E_A):
        store.delete_hashed(tx, counter_index)


def has_expired(tx: Transaction, layout: L.Layout, counter_index: int, now: float) -> bool:
    """Whether ``prune`` would drop an inbox message (``tx`` only reads)."""
    return any(expires <= now for _message, expires, _names in messages(tx, layout, counter_index))


def prune(store: Store, tx: Transaction, counter_index: int, now: float) -> None:
    """Drop the inbox's expired messages, wherever they are in it, and their copies' count."""
    layout = store.layout
    off = layout.entry(counter_index)
    previous, message = L.NIL, tx.u32(off + L.E_A)
    while message:
        head = layout.chunk(message)
        following = tx.u32(head + L.M_NEXT)
        if F64.unpack_from(tx.mem, head + L.M_EXPIRES)[0] > now:
            previous, message = message, following
            continue
        copies = len(split(read_message(tx, layout, message))[0])
        tx.set_u32(layout.chunk(previous) + L.M_NEXT if previous else off + L.E_A, following)
        if not following:
            tx.set_u32(off + L.E_B, previous)
        tx.set_u32(off + L.E_C, tx.u32(off + L.E_C) - copies)
        free_message(tx, layout, message)
        message = following


def messages(tx: Transaction, layout: L.Layout, counter_index: int) -> Iterator[tuple[int, float, list[bytes]]]:
    """(first chunk, expiry stamp, local names) of each inbox message, oldest first (``tx`` only
    reads: the checker and statistics pass one of their own); bounded, should it be corrupt."""
    message = tx.u32(layout.entry(counter_index) + L.E_A)
    for _ in range(layout.n_chunks):
        if not message:
            return
        head = layout.chunk(message)
        yield message, F64.unpack_from(tx.mem, head + L.M_EXPIRES)[0], split(read_message(tx, layout, message))[0]
        message = tx.u32(head + L.M_NEXT)


def by_process(channels: list[bytes]) -> dict[bytes, list[bytes]]:
    """``channels`` by process: each one's 'p!' part, normal channels under b"", order kept."""
    found: dict[bytes, list[bytes]] = {}
    for channel in channels:
        found.setdefault(channel[:channel.find(b"!") + 1], []).append(channel)
    return found
