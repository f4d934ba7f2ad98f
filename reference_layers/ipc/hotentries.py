"""Creating and deleting channel (and ``p!`` counter) entries for the hot path, as u32 writes.

Why: a channel lives while it holds messages or waiters, so in a plain request/reply
exchange every send creates its channel and every receive deletes it again. Done by the
general :class:`~.journal.Transaction` that costs several times a hot send or receive.
These helpers compute the same changes as ``store.Store`` (allocate an entry, link it into
its hash bucket, the counter's sibling list; or the reverse) as ``(offset, 4, value)``
triples for :func:`~.journal.commit_u32s`, reading memory only, never their own writes.

A receive's first wait on a channel registers its loop there (``register``), usually making
the channel's entry too; a group_send reads its members (``live_members``) without a journal.

Where two changes would touch one word (the channel and its counter hashing to the same
bucket), they give up (None) and the caller takes the general path. An entry's name is
written straight into it before the commit: a free entry's name bytes belong to nobody.
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable

from . import layout as L

_HEAD = struct.Struct("<II")  # kind | namelen << 8 (one u32 word), next
_FIELDS = struct.Struct("<7I")  # A..G
_WAITER_LINK = struct.Struct("<II4xI").unpack_from  # waiter: A slot, B token (low 32 bits), D next waiter
_MEMBER = struct.Struct("<BBxxId4xI").unpack_from  # member: kind, name length, next, A+B expiry, D next member


class EntryWrites:
    """Entry bookkeeping of one segment, as write lists; call with the segment lock held."""

    def __init__(self, layout: L.Layout, mem, words):
        self.mem = mem
        self.words = words  # the segment as u32s (``Segment.words``)
        self.entries = layout.entries
        self.buckets = layout.buckets
        self.n_buckets = layout.n_buckets
        self.n_entries = layout.n_entries

    def bucket(self, kind: int, name: bytes) -> int:
        return self.buckets + 4 * (zlib.crc32(name, kind) % self.n_buckets)

    def find(self, kind: int, name: bytes) -> int:
        """The entry of ``kind`` and ``name``, or 0 (the bucket walk of ``Store.find``)."""
        mem, entries, size = self.mem, self.entries, len(name)
        index = self.words[self.bucket(kind, name) >> 2]
        word = kind | size << 8
        while index:
            off = entries + index * L.ENTRY_SIZE
            head, following = _HEAD.unpack_from(mem, off)
            if head & 0xFFFF == word and mem[off + L.E_NAME:off + L.E_NAME + size] == name:
                return index
            index = following
        return L.NIL

    def take(self, count: int, writes: list) -> list[int] | None:
        """``count`` entries off the free list, then fresh ones; None if the segment has none."""
        words, entries = self.words, self.entries
        taken: list[int] = []
        index = words[L.H_ENTRY_FREE >> 2]
        while index and len(taken) < count:
            taken.append(index)
            index = words[(entries + index * L.ENTRY_SIZE + L.E_NEXT) >> 2]
        if taken:
            writes += (L.H_ENTRY_FREE, 4, index)
        need = count - len(taken)
        if need:
            bump = words[L.H_ENTRY_BUMP >> 2]
            if bump + need - 1 > self.n_entries:
                return None  # the general path raises SegmentFull with the details
            taken.extend(range(bump, bump + need))
            writes += (L.H_ENTRY_BUMP, 4, bump + need)
        return taken

    def fill(self, index: int, kind: int, name: bytes, bucket: int | None, fields: tuple, writes: list) -> None:
        """Make ``index`` (just taken) a ``kind`` entry named ``name`` with fields A..G, first in
        ``bucket`` (None: in no bucket, as a waiter, which is found through its channel).

        The name and fields A..G go straight into the entry: a free entry uses only its kind
        and link (the free list), so until the commit they belong to nobody. The kind and the
        link go through the journal.
        """
        off = self.entries + index * L.ENTRY_SIZE
        mem = self.mem
        mem[off + L.E_NAME:off + L.E_NAME + len(name)] = name
        _FIELDS.pack_into(mem, off + L.E_A, *fields)
        if bucket is None:
            writes += (off, 4, kind | len(name) << 8, off + L.E_NEXT, 4, L.NIL)
        else:
            writes += (off, 4, kind | len(name) << 8, off + L.E_NEXT, 4, self.words[bucket >> 2], bucket, 4, index)

    def unlink(self, bucket: int, index: int, writes: list) -> bool:
        """Take ``index`` out of its bucket chain; False if it is not there (corrupt: give up)."""
        words, entries = self.words, self.entries
        following = words[(entries + index * L.ENTRY_SIZE + L.E_NEXT) >> 2]
        current = words[bucket >> 2]
        if current == index:
            writes += (bucket, 4, following)
            return True
        while current:
            link = entries + current * L.ENTRY_SIZE + L.E_NEXT
            current = words[link >> 2]
            if current == index:
                writes += (link, 4, following)
                return True
        return False

    def delete_channel(self, name: bytes, index: int, counter: int, writes: list) -> bool:
        """Writes deleting the emptied channel ``index`` (and its ``p!`` counter if it was the
        last of its process's channels); False if it is not where it should be (corrupt)."""
        words, entries = self.words, self.entries
        bucket = self.bucket(L.KIND_CHANNEL, name)
        if not self.unlink(bucket, index, writes):
            return False
        doomed = [index]  # freed last, so first to be taken again: the next send's channel (cached)
        if counter:
            counter_off = entries + counter * L.ENTRY_SIZE
            off = entries + index * L.ENTRY_SIZE
            following, previous = words[(off + L.E_D) >> 2], words[(off + L.E_G) >> 2]
            if not previous and not following:  # the last of this process's channels
                counter_bucket = self.bucket(L.KIND_COUNTER, name[:name.find(b"!") + 1])
                if counter_bucket == bucket or not self.unlink(counter_bucket, counter, writes):
                    return False
                doomed.insert(0, counter)
            else:
                writes += (counter_off + L.E_C, 4, words[(counter_off + L.E_C) >> 2] - 1)
                self.unlink_sibling(counter_off, previous, following, writes)
        self.free(doomed, writes)
        return True

    def unlink_sibling(self, counter_off: int, previous: int, following: int, writes: list) -> None:
        """Writes taking a channel out of its counter's sibling list, between ``previous`` and
        ``following`` (its back and forward links, G and D): O(1), no walk."""
        entries = self.entries
        writes += (entries + previous * L.ENTRY_SIZE + L.E_D if previous else counter_off + L.E_D, 4, following)
        if following:
            writes += (entries + following * L.ENTRY_SIZE + L.E_G, 4, previous)

    def free(self, indices: list[int], writes: list) -> None:
        """Put ``indices`` (already unlinked) on the free list; the last one ends up first."""
        head = self.words[L.H_ENTRY_FREE >> 2]
        for index in indices:
            off = self.entries + index * L.ENTRY_SIZE
            writes += (off, 4, L.KIND_FREE, off + L.E_NEXT, 4, head)
            head = index
        writes += (L.H_ENTRY_FREE, 4, head)

    def register(self, index: int, name: bytes, slot: int, token: int, writes: list) -> bool:
        """Writes registering waker ``slot`` (its token's low 32 bits) idle on channel ``name``
        (entry ``index``, or 0: made here, with its ``p!`` counter's if need be); False, having
        changed nothing, if it is registered already or two inserts would share a bucket.

        Why: each receive that first waits on a channel registers there; through a Transaction
        that cost about 40 µs, and a process whose 250 members of a group all start waiting at
        once paid 10 ms before the first group_send could reach them.
        """
        if not index:
            return self.create_channel(name, writes, waiter=(slot, token))
        words, entries = self.words, self.entries
        off = entries + index * L.ENTRY_SIZE
        first = waiter = words[(off + L.E_E) >> 2]
        while waiter:
            w_slot, w_token, waiter = _WAITER_LINK(self.mem, entries + waiter * L.ENTRY_SIZE + L.E_A)
            if w_slot == slot and w_token == token:
                return False
        taken = self.take(1, writes)
        if taken is None:
            return False
        self.fill(taken[0], L.KIND_WAITER, b"", None, (slot, token, L.WAITER_IDLE, first, 0, 0, 0), writes)
        writes += (off + L.E_E, 4, taken[0])
        return True

    def create_channel(self, name: bytes, writes: list, *, message: Callable[[list], int] | None = None,
                       capacity: int = 0, waiter: tuple[int, int] | None = None) -> bool:
        """Writes making the entry of channel ``name`` (which has none), with its ``p!`` counter's
        if need be, first in the counter's sibling list: holding one message, whose first chunk
        ``message(writes)`` takes once the entries are (the C step's order, so both leave the same
        journal), its process's channels holding fewer than ``capacity``; or empty, with waker
        ``waiter`` (slot, token's low 32 bits) registered idle. False, having changed nothing,
        if the process's channels are full, the segment is, or two inserts would share a bucket.

        Why one helper: a first send and a first wait both make a channel; the sibling links
        (D forward, G back) and the counter's held count must come out the same either way.
        """
        words, entries = self.words, self.entries
        count = 1 if message is not None else 0
        bucket = self.bucket(L.KIND_CHANNEL, name)
        bang = name.find(b"!")
        counter = held = 0
        if bang >= 0:
            counter_name = name[:bang + 1]
            counter = self.find(L.KIND_COUNTER, counter_name)
            if counter:
                held_at = entries + counter * L.ENTRY_SIZE + L.E_C
                held = words[held_at >> 2]
                if count and words[(held_at - L.E_C + L.E_A) >> 2]:
                    return False  # its process's inbox goes before a message (inbox.py)
            else:
                counter_bucket = self.bucket(L.KIND_COUNTER, counter_name)
                if counter_bucket == bucket:
                    return False  # two inserts into one bucket: the general path orders them
        if count and held >= capacity:
            return False  # the general path prunes expired messages, then decides
        taken = self.take(1 + (waiter is not None) + (bang >= 0 and not counter), writes)
        if taken is None:
            return False
        first = message(writes) if message is not None else 0
        if count and not first:
            return False
        index = taken[0]
        waiter_index = taken[1] if waiter is not None else 0
        sibling = 0
        if bang >= 0:
            if counter:
                counter_off = entries + counter * L.ENTRY_SIZE
                sibling = words[(counter_off + L.E_D) >> 2]
                writes += (counter_off + L.E_D, 4, index)
                if count:
                    writes += (held_at, 4, held + count)
                if sibling:
                    writes += (entries + sibling * L.ENTRY_SIZE + L.E_G, 4, index)
            else:  # fields A..G of a counter: C messages held, D first sibling (layout.KIND_COUNTER)
                counter = taken[-1]
                self.fill(counter, L.KIND_COUNTER, counter_name, counter_bucket, (0, 0, count, index, 0, 0, 0), writes)
        # A head, B tail, C count, D next sibling, E waiters, F counter, G previous sibling (layout.KIND_CHANNEL)
        self.fill(index, L.KIND_CHANNEL, name, bucket, (first, first, count, sibling, waiter_index, counter, 0),
                  writes)
        if waiter is not None:
            self.fill(waiter_index, L.KIND_WAITER, b"", None, (*waiter, L.WAITER_IDLE, 0, 0, 0, 0), writes)
        return True

    def live_members(self, group: bytes, now: float) -> list[bytes] | None:
        """The channels of ``group``'s members, read without a journal; None if one has expired
        (the general path, ``Store.group_members``, removes it) or the list looks corrupt.

        Why: a group_send reads every membership under the lock; through a Transaction that
        cost about 0.9 µs a member, most of a group_send of one-chunk copies made in C.
        """
        index = self.find(L.KIND_GROUP, group)
        if not index:
            return []
        mem, entries = self.mem, self.entries
        names: list[bytes] = []
        member = self.words[(entries + index * L.ENTRY_SIZE + L.E_A) >> 2]
        for _ in range(self.n_entries):
            if not member:
                return names
            off = entries + member * L.ENTRY_SIZE
            kind, length, _next, expiry, member = _MEMBER(mem, off)
            if kind != L.KIND_MEMBER or expiry <= now:
                return None
            names.append(mem[off + L.E_NAME:off + L.E_NAME + length])
        return None
