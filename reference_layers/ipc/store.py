"""Channels, groups and waiters as linked structures in the segment, changed only through a
:class:`~.journal.Transaction`.

A channel is an entry (found through the hash buckets) whose queue is a linked list of
messages; a message is a chain of chunks (``messages.py``). Every process-specific channel ``p!x`` also points
at a *counter* entry for ``p!`` that counts the messages of all ``p!*`` (they share one
capacity) and lists them as siblings, so expired siblings can be pruned to make room; its
inbox holds group copies for them (``inbox.py``), counted there too. A
group is an entry with a list of member entries (channel name + expiry). A receiving event
loop registers a waiter entry (its waker slot) on the channel and keeps it while it keeps
receiving there; the waiter is *armed* while a receive actually waits, and senders poke only
armed waiters. A channel entry lives while it holds messages or waiters. ``hotpath.py`` does
the common sends and receives without a Transaction; everything else happens here.
"""

from __future__ import annotations

import zlib

from . import groups, inbox
from . import layout as L
from .journal import F64, U32, U64, Transaction
from .messages import alloc_chunks, chunks_for, free_message, read_message, write_message
from .segment import SegmentFull

_ALL_FIELDS = (L.E_NEXT, L.E_A, L.E_B, L.E_C, L.E_D, L.E_E, L.E_F, L.E_G)
_MEMBER_FIELDS = (L.E_NEXT, L.E_C, L.E_D, L.E_E, L.E_F, L.E_G)


class Full(Exception):
    """The channel holds its capacity of messages (raised before anything was changed)."""


def counter_name(channel: bytes) -> bytes | None:
    """``b'p!x'`` -> ``b'p!'`` (the part whose capacity all of one process's channels share)."""
    bang = channel.find(b"!")
    return None if bang < 0 else channel[:bang + 1]


class Store:
    def __init__(self, layout: L.Layout, segment_name: str):
        self.layout = layout
        self.segment_name = segment_name

    # --- entries ---------------------------------------------------------------------------
    def _bucket(self, kind: int, name: bytes) -> int:
        return self.layout.buckets + 4 * (zlib.crc32(name, kind) % self.layout.n_buckets)

    def find(self, tx: Transaction, kind: int, name: bytes) -> int:
        index = tx.u32(self._bucket(kind, name))
        entry = self.layout.entry
        while index:
            off = entry(index)
            if tx.u8(off + L.E_KIND) == kind and tx.name(off) == name:
                return index
            index = tx.u32(off + L.E_NEXT)
        return L.NIL

    def _alloc_entry(self, tx: Transaction, kind: int, name: bytes = b"") -> int:
        index = tx.u32(L.H_ENTRY_FREE)
        if index:
            tx.set_u32(L.H_ENTRY_FREE, tx.u32(self.layout.entry(index) + L.E_NEXT))
        else:
            index = tx.u32(L.H_ENTRY_BUMP)
            if index > self.layout.n_entries:
                raise SegmentFull(
                    f"shared segment {self.segment_name} has no free entry for another channel, group "
                    f"or member ({self.layout.n_entries} in use); raise segment_size")
            tx.set_u32(L.H_ENTRY_BUMP, index + 1)
        off = self.layout.entry(index)
        tx.set_u8(off + L.E_KIND, kind)
        tx.set_u8(off + L.E_NAMELEN, len(name))
        tx.set_bytes(off + L.E_NAME, name)
        # a member keeps an f64 over A and B: set it as one field (each field has one width)
        for field in _MEMBER_FIELDS if kind == L.KIND_MEMBER else _ALL_FIELDS:
            tx.set_u32(off + field, 0)
        if kind == L.KIND_MEMBER:
            tx.set_f64(off + L.E_EXPIRY, 0.0)
        return index

    def _free_entry(self, tx: Transaction, index: int) -> None:
        off = self.layout.entry(index)
        tx.set_u8(off + L.E_KIND, L.KIND_FREE)
        tx.set_u32(off + L.E_NEXT, tx.u32(L.H_ENTRY_FREE))
        tx.set_u32(L.H_ENTRY_FREE, index)

    def create_hashed(self, tx: Transaction, kind: int, name: bytes, bucket: int | None = None) -> int:
        """A new entry, first in its bucket: the one of its kind and name unless ``bucket`` says
        (a group member's, groups.member_bucket)."""
        index = self._alloc_entry(tx, kind, name)
        if bucket is None:
            bucket = self._bucket(kind, name)
        tx.set_u32(self.layout.entry(index) + L.E_NEXT, tx.u32(bucket))
        tx.set_u32(bucket, index)
        return index

    def delete_hashed(self, tx: Transaction, index: int, bucket: int | None = None) -> None:
        """Take the entry out of its bucket (as ``create_hashed`` placed it) and free it."""
        if bucket is None:
            off = self.layout.entry(index)
            bucket = self._bucket(tx.u8(off + L.E_KIND), tx.name(off))
        _unlink(tx, bucket, index, self.layout.entry, L.E_NEXT)
        self._free_entry(tx, index)

    def _field(self, tx: Transaction, index: int, field: int) -> int:
        return tx.u32(self.layout.entry(index) + field)

    def _set(self, tx: Transaction, index: int, field: int, value: int) -> None:
        tx.set_u32(self.layout.entry(index) + field, value)

    def _add(self, tx: Transaction, index: int, field: int, delta: int) -> None:
        off = self.layout.entry(index) + field
        tx.set_u32(off, tx.u32(off) + delta)

    # --- channels --------------------------------------------------------------------------
    def held(self, tx: Transaction, channel: bytes, counter: bytes | None) -> int:
        index = self.find(tx, L.KIND_COUNTER, counter) if counter is not None else self.find(tx, L.KIND_CHANNEL, channel)
        return self._field(tx, index, L.E_C) if index else 0

    def send(self, tx: Transaction, channel: bytes, data: bytes, expires: float, capacity: int) -> list[tuple[int, int, int]]:
        """Queue one message; raises Full or SegmentFull having changed nothing.

        Returns the waiters to poke: (waker slot, waker token, armed epoch).
        """
        counter = counter_name(channel)
        index = self.find(tx, L.KIND_CHANNEL, channel)
        counter_index = self.find(tx, L.KIND_COUNTER, counter) if counter is not None else L.NIL
        held_by = counter_index if counter is not None else index
        if held_by and self._field(tx, held_by, L.E_C) >= capacity:
            raise Full
        chunks, _ = alloc_chunks(tx, self.layout, chunks_for(len(data)), self.segment_name)
        if not index:
            index = self.create_channel(tx, channel)
            counter_index = self._field(tx, index, L.E_F)
        message = write_message(tx, self.layout, chunks, data, expires)
        tail = self._field(tx, index, L.E_B)
        if tail:
            tx.set_u32(self.layout.chunk(tail) + L.M_NEXT, message)
        else:
            self._set(tx, index, L.E_A, message)
        self._set(tx, index, L.E_B, message)
        self._add(tx, index, L.E_C, 1)
        if counter_index:
            self._add(tx, counter_index, L.E_C, 1)
        return self._waiters(tx, index)

    def _take_head(self, tx: Transaction, index: int, now: float) -> bytes | None:
        """Remove the channel's first message; its bytes, or None if it had expired."""
        message = self._field(tx, index, L.E_A)
        off = self.layout.chunk(message)
        following = tx.u32(off + L.M_NEXT)
        self._set(tx, index, L.E_A, following)
        if not following:
            self._set(tx, index, L.E_B, L.NIL)
        self._add(tx, index, L.E_C, -1)
        counter_index = self._field(tx, index, L.E_F)
        if counter_index:
            self._add(tx, counter_index, L.E_C, -1)
        expires = F64.unpack_from(tx.mem, off + L.M_EXPIRES)[0]
        data = read_message(tx, self.layout, message) if expires > now else None
        free_message(tx, self.layout, message)
        return data

    def pop(self, tx: Transaction, channel: bytes, now: float) -> bytes | None:
        """The first unexpired message (dropping expired ones before it), or None."""
        index = self.find(tx, L.KIND_CHANNEL, channel)
        if not index:
            return None
        data = None
        while data is None and self._field(tx, index, L.E_A):
            data = self._take_head(tx, index, now)
        self._delete_if_unused(tx, index)
        return data

    def create_channel(self, tx: Transaction, channel: bytes) -> int:
        index = self.create_hashed(tx, L.KIND_CHANNEL, channel)
        counter = counter_name(channel)
        if counter is not None:
            counter_index = self.find(tx, L.KIND_COUNTER, counter) or self.create_hashed(tx, L.KIND_COUNTER, counter)
            self._set(tx, index, L.E_F, counter_index)
            sibling = self._field(tx, counter_index, L.E_D)
            self._set(tx, index, L.E_D, sibling)
            if sibling:
                self._set(tx, sibling, L.E_G, index)
            self._set(tx, counter_index, L.E_D, index)
        return index

    def pop_or_arm(self, tx: Transaction, channel: bytes, now: float, *, slot: int, token: int,
                   disarm: bool, epoch: int | None) -> bytes | None:
        """Pop a message for a receive of waker ``slot``, which stays registered on the channel.

        Its waiter is *armed* with ``epoch`` (senders poke it) when nothing was found (with
        None, left as it is: another receive of that waker may be armed there), made idle when
        a message was found and ``disarm`` (no other receive of that waker waits here).
        """
        index = self.find(tx, L.KIND_CHANNEL, channel) or self.create_channel(tx, channel)
        waiter = self._field(tx, index, L.E_E)
        while waiter:
            if self._field(tx, waiter, L.E_A) == slot and self._field(tx, waiter, L.E_B) == token:
                break
            waiter = self._field(tx, waiter, L.E_D)
        else:
            waiter = self._alloc_entry(tx, L.KIND_WAITER)
            self._set(tx, waiter, L.E_A, slot)
            self._set(tx, waiter, L.E_B, token)
            self._set(tx, waiter, L.E_D, self._field(tx, index, L.E_E))
            self._set(tx, index, L.E_E, waiter)
        data = self.pop(tx, channel, now)  # the channel is kept: it has a waiter
        if data is None:
            if epoch is None:  # registered only (a spinning receive): leave the arm as it is
                return None
            self._set(tx, waiter, L.E_C, epoch & 0xFFFFFFFF)
            self._set(tx, waiter, L.E_E, epoch >> 32)
        elif disarm:
            self._set(tx, waiter, L.E_C, L.WAITER_IDLE)
        return data

    def unregister(self, tx: Transaction, channel: bytes, slot: int, token: int) -> None:
        index = self.find(tx, L.KIND_CHANNEL, channel)
        if index:
            self._remove_waiter(tx, index, slot, token)
            self._delete_if_unused(tx, index)

    def _remove_waiter(self, tx: Transaction, index: int, slot: int, token: int) -> None:
        previous, waiter = L.NIL, self._field(tx, index, L.E_E)
        while waiter:
            following = self._field(tx, waiter, L.E_D)
            if self._field(tx, waiter, L.E_A) == slot and self._field(tx, waiter, L.E_B) == token:
                if previous:
                    self._set(tx, previous, L.E_D, following)
                else:
                    self._set(tx, index, L.E_E, following)
                self._free_entry(tx, waiter)
                return
            previous, waiter = waiter, following

    def _waiters(self, tx: Transaction, index: int) -> list[tuple[int, int, int]]:
        """Who to poke: (slot, token, epoch) of the armed waiters; waiters whose waker slot was
        freed or reused are dropped."""
        found = []
        previous, waiter = L.NIL, self._field(tx, index, L.E_E)
        mem, waker = tx.mem, self.layout.waker
        while waiter:
            slot, token = self._field(tx, waiter, L.E_A), self._field(tx, waiter, L.E_B)
            following = self._field(tx, waiter, L.E_D)
            off = waker(slot)
            if 0 < slot < L.WAKER_SLOTS and mem[off + L.W_STATE] and U32.unpack_from(mem, off + L.W_TOKEN)[0] == token:
                low = self._field(tx, waiter, L.E_C)
                if low != L.WAITER_IDLE:  # a receive is waiting right now
                    epoch = self._field(tx, waiter, L.E_E) << 32 | low
                    found.append((slot, U64.unpack_from(mem, off + L.W_TOKEN)[0], epoch))
                previous = waiter
            else:
                if previous:
                    self._set(tx, previous, L.E_D, following)
                else:
                    self._set(tx, index, L.E_E, following)
                self._free_entry(tx, waiter)
            waiter = following
        return found

    def _delete_if_unused(self, tx: Transaction, index: int) -> None:
        if self._field(tx, index, L.E_A) or self._field(tx, index, L.E_E):
            return
        counter_index = self._field(tx, index, L.E_F)
        self.delete_hashed(tx, index)
        if counter_index:
            self._unlink_sibling(tx, counter_index, index)
            inbox.delete_if_unused(self, tx, counter_index)

    def _unlink_sibling(self, tx: Transaction, counter_index: int, index: int) -> None:
        """Take channel ``index`` out of its counter's sibling list: O(1), through its back link."""
        previous, following = self._field(tx, index, L.E_G), self._field(tx, index, L.E_D)
        if previous:
            self._set(tx, previous, L.E_D, following)
        else:
            self._set(tx, counter_index, L.E_D, following)
        if following:
            self._set(tx, following, L.E_G, previous)

    def expired_heads(self, tx: Transaction, channel: bytes, now: float) -> bool:
        """Whether ``prune`` would drop anything: a queue it walks has an expired head. Read-only,
        straight from memory past the lookups (``tx`` must have written nothing): a process that
        stays full (one that died with members in groups) is asked on every send and group_send
        to it, and pruning rewrites each sibling even when nothing expired."""
        counter = counter_name(channel)
        if counter is None:
            index = self.find(tx, L.KIND_CHANNEL, channel)
            siblings_next = None
        else:
            counter_index = self.find(tx, L.KIND_COUNTER, counter)
            if counter_index and inbox.has_expired(tx, self.layout, counter_index, now):
                return True
            index = U32.unpack_from(tx.mem, self.layout.entry(counter_index) + L.E_D)[0] if counter_index else L.NIL
            siblings_next = L.E_D
        mem, entry, chunk = tx.mem, self.layout.entry, self.layout.chunk
        while index:
            head = U32.unpack_from(mem, entry(index) + L.E_A)[0]
            if head and F64.unpack_from(mem, chunk(head) + L.M_EXPIRES)[0] <= now:
                return True
            if siblings_next is None:
                return False
            index = U32.unpack_from(mem, entry(index) + siblings_next)[0]
        return False

    def prune(self, tx: Transaction, channel: bytes, now: float) -> None:
        """Drop expired messages at the head of ``channel`` (of every ``p!*`` sibling for 'p!x')."""
        counter = counter_name(channel)
        if counter is None:
            index = self.find(tx, L.KIND_CHANNEL, channel)
            siblings = [index] if index else []
        else:
            counter_index = self.find(tx, L.KIND_COUNTER, counter)
            siblings = []
            if counter_index:
                inbox.prune(self, tx, counter_index, now)
                inbox.delete_if_unused(self, tx, counter_index)  # if its inbox held all it had
            index = self._field(tx, counter_index, L.E_D) if counter_index else L.NIL
            while index:
                siblings.append(index)
                index = self._field(tx, index, L.E_D)
        chunk = self.layout.chunk
        for index in siblings:
            while True:
                head = self._field(tx, index, L.E_A)
                if not head or F64.unpack_from(tx.mem, chunk(head) + L.M_EXPIRES)[0] > now:
                    break
                self._take_head(tx, index, now)
            self._delete_if_unused(tx, index)

    # --- groups (groups.py) ------------------------------------------------------------------
    def group_add(self, tx: Transaction, group: bytes, channel: bytes, expires: float) -> None:
        groups.add(self, tx, group, channel, expires)

    def group_discard(self, tx: Transaction, group: bytes, channel: bytes) -> None:
        groups.discard(self, tx, group, channel)

    def group_members(self, tx: Transaction, group: bytes, now: float) -> list[bytes]:
        """The live members' channels; expired memberships are removed on the way."""
        return groups.live_members(self, tx, group, now)


def _unlink(tx: Transaction, head_off: int, index: int, entry, next_field: int) -> None:
    """Remove ``index`` from the singly linked list whose head pointer is at ``head_off``."""
    current = tx.u32(head_off)
    if current == index:
        tx.set_u32(head_off, tx.u32(entry(index) + next_field))
        return
    while current:
        following = tx.u32(entry(current) + next_field)
        if following == index:
            tx.set_u32(entry(current) + next_field, tx.u32(entry(index) + next_field))
            return
        current = following
    raise AssertionError(f"entry {index} missing from its list")  # pragma: no cover
