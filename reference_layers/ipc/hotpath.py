"""The hot path: a send to, or a receive from, a channel that already exists, in one short step.

Why it exists: the general :class:`~.segment.Transaction` (a read-your-writes dict, one
journal record packed per field) costs tens of microseconds per call. The common cases
change a handful of u32 fields whose new values can all be computed from memory read
*before* any write, so they need no read-your-writes: the changes go into one compact
redo-journal commit (:func:`~.segment.commit_u32s`: the same journal format, commit point
and pause points, so crash repair is unchanged). Anything unusual — a channel that does not
exist yet or would be emptied and deleted, an expired head, a message of more than one
chunk, a full channel, a stale waiter — returns :data:`NOT_HANDLED`, and the caller takes
the general path (``store.py``) in the same locked step.

Channel entries never move once placed, so their indices are cached per process; a cached
index is trusted only if the entry still holds that channel's kind and name and the segment
has not been re-formatted since (``H_FLUSHES`` counts flushes and crash re-formats).

The *armed* flag of a waiter (field C) is the exception to "everything through the
journal": it is one aligned u32 that nothing else depends on, so it is stored directly.
"""

from __future__ import annotations

import struct
import zlib

from . import layout as L
from .segment import U32, U64, Segment, commit_u32s

NOT_HANDLED = object()

_FIELDS = struct.Struct("<6I")  # entry fields A..F
_WAITER = struct.Struct("<4I")  # waiter: A slot, B token (low 32 bits), C armed, D next
_MESSAGE = struct.Struct("<IIId")  # M_NEXT, M_LENGTH, M_LAST, M_EXPIRES (bytes 4..24 of a chunk)
_CACHE_LIMIT = 4096

assert L.E_B - L.E_A == 4 and L.E_F - L.E_A == 20 and L.M_EXPIRES - L.M_NEXT == 12


class HotPath:
    """Fast versions of send / pop / pop_or_arm; call only with the segment lock held."""

    def __init__(self, segment: Segment):
        self.segment = segment
        layout = segment.layout
        self.layout = layout
        self.journal = layout.journal
        self.entries = layout.entries
        self.chunks = layout.chunks
        self.wakers = layout.wakers
        self.buckets = layout.buckets
        self.n_buckets = layout.n_buckets
        self.n_chunks = layout.n_chunks
        self.cache: dict[bytes, int] = {}
        self.generation = -1

    def channel(self, name: bytes) -> int:
        """The entry index of channel ``name``, or 0 (NIL) if it has none."""
        mem = self.segment.mem
        generation = U32.unpack_from(mem, L.H_FLUSHES)[0]
        cache = self.cache
        if generation != self.generation:
            cache.clear()
            self.generation = generation
        index = cache.get(name)
        entries = self.entries
        if index:
            off = entries + index * L.ENTRY_SIZE
            if (mem[off] == L.KIND_CHANNEL and mem[off + L.E_NAMELEN] == len(name)
                    and mem[off + L.E_NAME:off + L.E_NAME + len(name)] == name):
                return index
        index = self._find(mem, name)
        if index:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[name] = index
        return index

    def _find(self, mem, name: bytes) -> int:
        """The bucket walk of ``Store.find``, reading memory directly (nothing is pending)."""
        index = U32.unpack_from(mem, self.buckets + 4 * (zlib.crc32(name, L.KIND_CHANNEL) % self.n_buckets))[0]
        entries, size = self.entries, len(name)
        while index:
            off = entries + index * L.ENTRY_SIZE
            if (mem[off] == L.KIND_CHANNEL and mem[off + L.E_NAMELEN] == size
                    and mem[off + L.E_NAME:off + L.E_NAME + size] == name):
                return index
            index = U32.unpack_from(mem, off + L.E_NEXT)[0]
        return L.NIL

    def send(self, name: bytes, data: bytes, expires: float, capacity: int, label: str = "send"):
        """Queue a one-chunk message on an existing channel: the waiters to poke, or NOT_HANDLED."""
        if len(data) > L.FIRST_ROOM:
            return NOT_HANDLED
        index = self.channel(name)
        if not index:
            return NOT_HANDLED
        mem = self.segment.mem
        off = self.entries + index * L.ENTRY_SIZE
        _head, tail, count, _sibling, waiter, counter = _FIELDS.unpack_from(mem, off + L.E_A)
        if counter:
            held_off = self.entries + counter * L.ENTRY_SIZE + L.E_C
            held = U32.unpack_from(mem, held_off)[0]
        else:
            held_off, held = off + L.E_C, count
        if held >= capacity:
            return NOT_HANDLED  # the general path prunes expired messages, then decides
        pokes = self._armed_waiters(mem, waiter)
        if pokes is None:
            return NOT_HANDLED
        chunks = self.chunks
        free = U32.unpack_from(mem, L.H_CHUNK_FREE)[0]
        if free:
            first = free
            first_off = chunks + first * L.CHUNK_SIZE
            writes = [L.H_CHUNK_FREE, 4, U32.unpack_from(mem, first_off + L.C_NEXT)[0], first_off + L.C_NEXT, 4, L.NIL]
        else:
            first = U32.unpack_from(mem, L.H_CHUNK_BUMP)[0]
            if first > self.n_chunks:
                return NOT_HANDLED  # the general path raises SegmentFull with the details
            first_off = chunks + first * L.CHUNK_SIZE
            U32.pack_into(mem, first_off + L.C_NEXT, L.NIL)  # a fresh chunk: nothing points at it
            writes = [L.H_CHUNK_BUMP, 4, first + 1]
        # the message itself goes straight into the chunk: nothing points at it until the commit
        start = first_off + L.FIRST_DATA
        mem[start:start + len(data)] = data
        _MESSAGE.pack_into(mem, first_off + L.M_NEXT, L.NIL, len(data), first, expires)
        if tail:
            writes += (chunks + tail * L.CHUNK_SIZE + L.M_NEXT, 4, first)
        else:
            writes += (off + L.E_A, 4, first)
        writes += (off + L.E_B, 4, first, off + L.E_C, 4, count + 1)
        if counter:
            writes += (held_off, 4, held + 1)
        writes += (L.H_CHUNKS_USED, 4, U32.unpack_from(mem, L.H_CHUNKS_USED)[0] + 1)
        commit_u32s(mem, self.journal, label, writes)
        return pokes

    def _armed_waiters(self, mem, waiter: int):
        """(slot, token) of the armed waiters; None if one is stale (the general path drops it)."""
        pokes = []
        entries, wakers = self.entries, self.wakers
        while waiter:
            slot, token, armed, following = _WAITER.unpack_from(mem, entries + waiter * L.ENTRY_SIZE + L.E_A)
            waker_off = wakers + slot * L.WAKER_SIZE
            if not (0 < slot < L.WAKER_SLOTS and mem[waker_off + L.W_STATE]
                    and U32.unpack_from(mem, waker_off + L.W_TOKEN)[0] == token):
                return None
            if armed:
                pokes.append((slot, U64.unpack_from(mem, waker_off + L.W_TOKEN)[0]))
            waiter = following
        return pokes

    def pop(self, name: bytes, now: float, slot: int = 0, token: int = 0, disarm: bool = False):
        """Take the head message of ``name``: its bytes, None if there is none, or NOT_HANDLED.

        With ``slot`` (a waker slot), this is pop-or-arm for a receive registered on the
        channel: found nothing -> its waiter is armed (senders will poke it); found a message
        and ``disarm`` -> disarmed. NOT_HANDLED if that waiter is not registered.
        """
        index = self.channel(name)
        if not index:
            return NOT_HANDLED if slot else None
        mem = self.segment.mem
        entries = self.entries
        off = entries + index * L.ENTRY_SIZE
        head, _tail, count, _sibling, waiter, counter = _FIELDS.unpack_from(mem, off + L.E_A)
        armed_off = 0
        if slot:
            while waiter:
                woff = entries + waiter * L.ENTRY_SIZE
                w_slot, w_token, armed, following = _WAITER.unpack_from(mem, woff + L.E_A)
                if w_slot == slot and w_token == token:
                    armed_off = woff + L.E_C
                    break
                waiter = following
            else:
                return NOT_HANDLED
        if not head:
            if armed_off and not armed:
                U32.pack_into(mem, armed_off, 1)
            return None
        chunks = self.chunks
        head_off = chunks + head * L.CHUNK_SIZE
        following, length, _last, expires = _MESSAGE.unpack_from(mem, head_off + L.M_NEXT)
        if expires <= now or length > L.FIRST_ROOM or not (following or waiter):
            return NOT_HANDLED  # expired, several chunks, or the channel would be deleted
        start = head_off + L.FIRST_DATA
        data = mem[start:start + length]
        writes = [off + L.E_A, 4, following]
        if not following:
            writes += (off + L.E_B, 4, L.NIL)
        writes += (off + L.E_C, 4, count - 1)
        if counter:
            counter_off = entries + counter * L.ENTRY_SIZE + L.E_C
            writes += (counter_off, 4, U32.unpack_from(mem, counter_off)[0] - 1)
        writes += (head_off + L.C_NEXT, 4, U32.unpack_from(mem, L.H_CHUNK_FREE)[0], L.H_CHUNK_FREE, 4, head,
                   L.H_CHUNKS_USED, 4, U32.unpack_from(mem, L.H_CHUNKS_USED)[0] - 1)
        commit_u32s(mem, self.journal, "receive", writes)
        if armed_off and disarm and armed:
            U32.pack_into(mem, armed_off, 0)
        return data
