"""Creating and deleting channel (and ``p!`` counter) entries for the hot path, as u32 writes.

Why: a channel lives while it holds messages or waiters, so in a plain request/reply
exchange every send creates its channel and every receive deletes it again. Done by the
general :class:`~.journal.Transaction` that costs several times a hot send or receive.
These helpers compute the same changes as ``store.Store`` (allocate an entry, link it into
its hash bucket, the counter's sibling list; or the reverse) as ``(offset, 4, value)``
triples for :func:`~.journal.commit_u32s`, reading memory only, never their own writes.

Where two changes would touch one word (the channel and its counter hashing to the same
bucket), they give up (None) and the caller takes the general path. An entry's name is
written straight into it before the commit: a free entry's name bytes belong to nobody.
"""

from __future__ import annotations

import struct
import zlib

from . import layout as L

_HEAD = struct.Struct("<II")  # kind | namelen << 8 (one u32 word), next
_FIELDS = struct.Struct("<7I")  # A..G


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

    def free(self, indices: list[int], writes: list) -> None:
        """Put ``indices`` (already unlinked) on the free list; the last one ends up first."""
        head = self.words[L.H_ENTRY_FREE >> 2]
        for index in indices:
            off = self.entries + index * L.ENTRY_SIZE
            writes += (off, 4, L.KIND_FREE, off + L.E_NEXT, 4, head)
            head = index
        writes += (L.H_ENTRY_FREE, 4, head)
