"""The hot path: a send or a receive of a one-chunk message in one short locked step.

Why it exists: the general :class:`~.journal.Transaction` (a read-your-writes dict, one
journal record packed per field) costs tens of microseconds per call. The common cases
change a handful of u32 fields whose new values can all be computed from memory read
*before* any write, so they need no read-your-writes: the changes go into one compact
redo-journal commit (:func:`~.journal.commit_u32s`, or unrolled for the two commonest shapes:
``commit_queue``, ``commit_dequeue``; the same journal format, commit point and pause
points, so crash repair is unchanged). That includes creating the channel on
its first send and deleting it when a receive empties it (``hotentries.py``): in a
request/reply exchange that happens on every message. Anything unusual — an expired head,
a message of more than one chunk, a full channel, a stale waiter, a full segment — returns
:data:`NOT_HANDLED`, and the caller takes the general path (``store.py``) in the same
locked step.

Channel entries never move once placed, so their indices are cached per process; a cached
index is trusted only if the entry still holds that channel's kind and name and the segment
has not been re-formatted since (``H_FLUSHES`` counts flushes and crash re-formats).

Where the C core is built (``native.py``, ``_hotcore.c``), the send and pop below hand the
commonest cases (a one-chunk message to a channel that exists or is made for it; a receive of
one, keeping its channel or deleting it) to it first;
anything it does not handle it answers NOT_HANDLED, having written nothing, and the Python
code here goes on.

The *armed* epoch of a waiter (fields C and E, see ``layout.WAITER_IDLE``) is the exception
to "everything through the journal": only its own process writes it, under the lock, and
nothing else depends on it, so it is stored directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import layout as L
from . import native
from .hotentries import EntryWrites
from .inbox import by_process, siblings
from .journal import commit_dequeue, commit_queue, commit_u32s
from .segment import Segment

NOT_HANDLED = native.NOT_HANDLED  # also what the C steps answer

_ENTRY = struct.Struct("<II6I").unpack_from  # kind|namelen word, next, fields A..F
_WAITER = struct.Struct("<5I").unpack_from  # waiter: A slot, B token (low 32 bits), C epoch low (0: idle), D next, E epoch high
_MESSAGE = struct.Struct("<IIId")  # M_NEXT, M_LENGTH, M_LAST, M_EXPIRES (bytes 4..24 of a chunk)
_MESSAGE_AT, _WRITE_MESSAGE = _MESSAGE.unpack_from, _MESSAGE.pack_into
_CHUNK_HEADER = struct.Struct("<III").unpack_from  # H_CHUNK_BUMP, H_CHUNK_FREE, H_CHUNKS_USED
_CACHE_LIMIT = 4096
_CHANNEL_WORD = L.KIND_CHANNEL
_ENTRY_SIZE, _CHUNK_SIZE, _FIRST_ROOM, _FIRST_DATA = L.ENTRY_SIZE, L.CHUNK_SIZE, L.FIRST_ROOM, L.FIRST_DATA
_E_A, _E_B, _E_C, _E_D, _E_E, _E_G, _E_NAME, _M_NEXT = L.E_A, L.E_B, L.E_C, L.E_D, L.E_E, L.E_G, L.E_NAME, L.M_NEXT
_WAKER_SIZE, _WAKER_SLOTS, _W_TOKEN = L.WAKER_SIZE, L.WAKER_SLOTS, L.W_TOKEN
_H_CHUNK_BUMP, _H_CHUNK_FREE, _H_CHUNKS_USED = L.H_CHUNK_BUMP, L.H_CHUNK_FREE, L.H_CHUNKS_USED
# word (u32) indices of header fields, for the segment's u32 view
_W_FLUSHES, _W_CHUNK_BUMP, _W_CHUNK_FREE, _W_CHUNKS_USED = (L.H_FLUSHES >> 2, _H_CHUNK_BUMP >> 2,
                                                           _H_CHUNK_FREE >> 2, _H_CHUNKS_USED >> 2)
_EPOCH_HIGH = (L.E_E - L.E_C) >> 2  # words from a waiter's C to its E

assert L.E_B - L.E_A == 4 and L.E_F - L.E_A == 20 and L.E_A - L.E_NEXT == 4 and L.M_EXPIRES - L.M_NEXT == 12
assert L.H_CHUNK_FREE == L.H_CHUNK_BUMP + 4 and L.H_CHUNKS_USED == L.H_CHUNK_FREE + 4 and L.E_C == L.E_A + 8
assert L.C_NEXT == 0 and _ENTRY_SIZE % 4 == 0 and _CHUNK_SIZE % 4 == 0 and L.W_TOKEN % 4 == 0 and L.W_STATE == 0
assert L.WAKER_SIZE % 4 == 0 and L.HEADER_SIZE % 4 == 0 and L.JOURNAL_SIZE % 4 == 0  # waker slots: u32-aligned


@dataclass(slots=True)
class CachedChannel:
    """Where one channel's entry sits, and what to compare before trusting it (``HotPath.channel``).

    A slotted dataclass: its fields read as fast as a tuple's items (measured on 3.11, faster
    than a NamedTuple's), and it is built only on a cache miss.
    """

    index: int  # the entry's index
    offset: int  # the entry's byte offset in the segment
    kind_at: int  # u32 index of the entry's kind | namelen << 8 word
    kind_word: int  # that word's low 16 bits while the entry is still this channel
    name_start: int  # where the entry's name bytes are in the segment
    name_end: int

    def holds(self, mem, words, name: bytes) -> bool:
        """The entry is still channel ``name`` (the generation is checked by the caller)."""
        return words[self.kind_at] & 0xFFFF == self.kind_word and mem[self.name_start:self.name_end] == name


@dataclass(slots=True, frozen=True)
class NameBuckets:
    """The hash buckets a channel's name and its ``p!`` part fall in (``HotPath.buckets``): what
    the C steps look the channel up by when no entry of it is cached, and what a receive that
    empties the channel unlinks it from. They depend on the name alone, so they never go stale.
    """

    bucket: int  # byte offset of the channel's bucket
    counter_length: int  # length of the 'p!' part, 0 for a normal channel
    counter_bucket: int  # byte offset of the 'p!' counter's bucket, 0 for a normal channel


class HotPath:
    """Fast versions of send / pop / pop_or_arm; call only with the segment lock held."""

    def __init__(self, segment: Segment):
        self.segment = segment
        layout = segment.layout
        self.mem = segment.mem
        self.words = segment.words
        self.journal = layout.journal
        self.entries = layout.entries
        self.chunks = layout.chunks
        self.wakers = layout.wakers
        self.n_chunks = layout.n_chunks
        self.hashed = EntryWrites(layout, segment.mem, segment.words)
        # send and pop check a hit inline (CachedChannel.holds, unrolled: the check under the
        # lock on every message)
        self.cache: dict[bytes, CachedChannel] = {}
        self.named: dict[bytes, NameBuckets] = {}
        self.generation = -1
        self.core = segment.core  # the C steps (native.py), or None

    def channel(self, name: bytes) -> int:
        """The entry index of channel ``name``, or 0 (NIL) if it has none."""
        words = self.words
        if words[_W_FLUSHES] != self.generation:
            self.cache.clear()
            self.generation = words[_W_FLUSHES]
        cached = self.cache.get(name)
        if cached is not None and cached.holds(self.mem, words, name):
            return cached.index
        index = self.hashed.find(L.KIND_CHANNEL, name)
        if index:
            cache = self.cache
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            off = self.entries + index * _ENTRY_SIZE
            cache[name] = CachedChannel(index, off, off >> 2, _CHANNEL_WORD | len(name) << 8, off + _E_NAME,
                                        off + _E_NAME + len(name))
        return index

    def buckets(self, name: bytes) -> NameBuckets:
        """Where ``name`` (and its 'p!' counter) hash to, computed once per name."""
        found = self.named.get(name)
        if found is None:
            if len(self.named) >= _CACHE_LIMIT:
                self.named.clear()
            counter_length = name.find(b"!") + 1
            hashed = self.hashed
            found = self.named[name] = NameBuckets(
                hashed.bucket(L.KIND_CHANNEL, name), counter_length,
                hashed.bucket(L.KIND_COUNTER, name[:counter_length]) if counter_length else 0)
        return found

    def cached_entry(self, name: bytes) -> tuple[int, int, int]:
        """(offset, kind word, generation) of ``name``'s cached entry for the C steps to check,
        or zeros: no entry cached, the C step looks the channel up by its buckets."""
        cached = self.cache.get(name)
        return (0, 0, 0) if cached is None else (cached.offset, cached.kind_word, self.generation)

    def _chunk(self, data: bytes, expires: float, writes: list) -> int:
        """Take a chunk and copy a one-chunk message into it; 0 if the segment is full.

        The bytes go straight into the chunk: nothing points at it until the commit. The
        chunk's own link (C_NEXT) is left as it is: in a one-chunk message nothing reads it
        (the length says there is no second chunk), and freeing the message rewrites it.
        """
        words = self.words
        first = words[_W_CHUNK_FREE]
        if first:
            first_off = self.chunks + first * _CHUNK_SIZE
            writes += (_H_CHUNK_FREE, 4, words[first_off >> 2])
        else:
            first = words[_W_CHUNK_BUMP]
            if first > self.n_chunks:
                return 0  # the general path raises SegmentFull with the details
            first_off = self.chunks + first * _CHUNK_SIZE
            writes += (_H_CHUNK_BUMP, 4, first + 1)
        start = first_off + _FIRST_DATA
        mem = self.mem
        mem[start:start + len(data)] = data
        _WRITE_MESSAGE(mem, first_off + _M_NEXT, L.NIL, len(data), first, expires)
        writes += (_H_CHUNKS_USED, 4, words[_W_CHUNKS_USED] + 1)
        return first

    def send(self, name: bytes, data: bytes, expires: float, capacity: int, label: str = "send"):
        """Queue a one-chunk message: the waiters to poke [(slot, token, epoch)], or NOT_HANDLED."""
        if len(data) > _FIRST_ROOM:
            return NOT_HANDLED
        mem, words = self.mem, self.words
        cached = self.cache.get(name)  # self.channel(name), inline for a cache hit
        if (cached is not None and words[_W_FLUSHES] == self.generation and words[cached.kind_at] & 0xFFFF == cached.kind_word
                and mem[cached.name_start:cached.name_end] == name):
            off = cached.offset
        else:
            if self.core is not None:  # looked up (and made if need be) in C; NOT_HANDLED: go on here
                where = self.buckets(name)
                pokes = self.core.send_named(name, where.bucket, where.counter_length, where.counter_bucket, data,
                                             expires, capacity, label)
                if pokes is not NOT_HANDLED:
                    return pokes
            index = self.channel(name)
            if not index:
                return self._send_creating(name, data, expires, capacity, label)
            off = self.entries + index * _ENTRY_SIZE
        if self.core is not None:  # the same step in C; NOT_HANDLED: every case below does it
            pokes = self.core.send(off, data, expires, capacity, label)
            if pokes is not NOT_HANDLED:
                return pokes
        _word, _next, head, tail, count, _sibling, waiter, counter = _ENTRY(mem, off)
        if counter:
            held_at = self.entries + counter * _ENTRY_SIZE + _E_C
            if words[(held_at - _E_C + _E_A) >> 2]:
                return NOT_HANDLED  # its process's inbox goes first (inbox.py)
            held = words[held_at >> 2]
            if held >= capacity:
                return NOT_HANDLED  # the general path prunes expired messages, then decides
        elif count >= capacity:
            return NOT_HANDLED
        else:  # no counter: the count record repeats the channel's own count
            held_at, held = off + _E_C, count
        if not waiter:
            pokes = ()
        else:  # one registered receive (the common case) inline, several in _armed_waiters
            slot, token, low, following, high = _WAITER(mem, self.entries + waiter * _ENTRY_SIZE + _E_A)
            if following:
                pokes = self._armed_waiters(waiter)
                if pokes is None:
                    return NOT_HANDLED
            else:
                token_word = (self.wakers + slot * _WAKER_SIZE + _W_TOKEN) >> 2
                if not (0 < slot < _WAKER_SLOTS and mem[(token_word << 2) - _W_TOKEN] and words[token_word] == token):
                    return NOT_HANDLED  # a stale waiter: the general path drops it
                pokes = ((slot, words[token_word + 1] << 32 | token, high << 32 | low),) if low else ()
        bump, free, used = _CHUNK_HEADER(mem, _H_CHUNK_BUMP)
        if free:  # take the first free chunk; its own link is left as it is (see _chunk)
            first = free
            first_off = self.chunks + first * _CHUNK_SIZE
            free = words[first_off >> 2]
        elif bump <= self.n_chunks:
            first = bump
            first_off = self.chunks + first * _CHUNK_SIZE
            bump += 1
        else:
            return NOT_HANDLED  # the general path raises SegmentFull with the details
        start = first_off + _FIRST_DATA
        mem[start:start + len(data)] = data
        _WRITE_MESSAGE(mem, first_off + _M_NEXT, L.NIL, len(data), first, expires)
        if tail:
            link, head = self.chunks + tail * _CHUNK_SIZE + _M_NEXT, head
        else:  # an empty queue: nothing to link; the record rewrites the new chunk's own 0
            link, head = first_off + _M_NEXT, first
        commit_queue(mem, words, self.journal, label, bump, free, used + 1, off + _E_A, head, first, count + 1,
                     link, first if tail else L.NIL, held_at, held + 1)
        return pokes

    def _send_creating(self, name: bytes, data: bytes, expires: float, capacity: int, label: str):
        """Send to a channel that has no entry yet: create it (and its ``p!`` counter if needed)."""
        writes: list[int] = []
        if not self.hashed.create_channel(name, writes, message=lambda writes: self._chunk(data, expires, writes),
                                          capacity=capacity):
            return NOT_HANDLED  # nothing committed
        commit_u32s(self.mem, self.words, self.journal, label, writes)
        return ()

    def register(self, name: bytes, slot: int, token: int) -> bool:
        """Register waker ``slot`` (its token's low 32 bits) on channel ``name``, idle, in one
        commit of its own (``EntryWrites.register`` says why): True, or False having written
        nothing (already registered, or an unusual case: ``Store.pop_or_arm`` does it all)."""
        writes: list[int] = []
        if not self.hashed.register(self.channel(name), name, slot, token, writes):
            return False
        commit_u32s(self.mem, self.words, self.journal, "register", writes)
        return True

    def live_members(self, group: bytes, now: float) -> dict[bytes, list[bytes]] | None:
        """The channels of ``group``'s members by process (``by_process``; read as
        ``EntryWrites.live_members`` does), in one C call where the core is built."""
        if self.core is None:
            members = self.hashed.live_members(group, now)
            return None if members is None else by_process(members)
        index = self.hashed.find(L.KIND_GROUP, group)
        return self.core.live_members(self.entries + index * _ENTRY_SIZE, now) if index else {}

    def inbox_pending(self, name: bytes) -> bool:
        """Whether the counter of ``name``'s process has an inbox (inbox.py)."""
        bang = name.find(b"!")
        if bang < 0:
            return False
        counter = self.hashed.find(L.KIND_COUNTER, name[:bang + 1])
        return bool(counter and self.words[(self.entries + counter * _ENTRY_SIZE + _E_A) >> 2])

    def armed_siblings(self, counter: int) -> list[tuple[bytes, list[tuple[int, int, int]]]]:
        """(name, its armed waiters' (slot, token, epoch)) of each channel of counter entry
        ``counter``'s process that has some (a group copy went to its inbox, inbox.py); stale
        waiters are skipped, for a send to drop. One C call where the core is built."""
        if self.core is not None:
            return self.core.armed_siblings(self.entries + counter * _ENTRY_SIZE)
        found = []
        for index, name in siblings(self.mem, self.segment.layout, counter):
            pokes = self._armed_waiters(self.words[(self.entries + index * _ENTRY_SIZE + _E_E) >> 2], skip_stale=True)
            if pokes:
                found.append((name, pokes))
        return found

    def _armed_waiters(self, waiter: int, skip_stale: bool = False):
        """(slot, token, epoch) of the armed waiters; None if one is stale (the general path drops
        it), unless ``skip_stale`` (then it is left out, for a send to drop)."""
        pokes: list[tuple[int, int, int]] = []
        mem, words, entries, wakers = self.mem, self.words, self.entries, self.wakers
        for _ in range(_WAKER_SLOTS):  # a bound, should the list ever be corrupt (then the general path)
            if not waiter:
                return pokes
            slot, token, low, following, high = _WAITER(mem, entries + waiter * _ENTRY_SIZE + _E_A)
            waker_off = wakers + slot * L.WAKER_SIZE
            token_word = (waker_off + L.W_TOKEN) >> 2
            if not (0 < slot < L.WAKER_SLOTS and mem[waker_off + L.W_STATE] and words[token_word] == token):
                if not skip_stale:
                    return None
                waiter = following
                continue
            if low:
                pokes.append((slot, words[token_word + 1] << 32 | token, high << 32 | low))
            waiter = following
        return None if not skip_stale else pokes

    def pop(self, name: bytes, now: float, *, slot: int = 0, token: int = 0, disarm: bool = False, epoch: int | None = 0):
        """Take the head message of ``name``: its bytes, None if there is none, or NOT_HANDLED.

        With ``slot`` (a waker slot), this is pop-or-arm for a receive registered on the
        channel: found nothing -> its waiter is armed with ``epoch`` (senders will poke it;
        None leaves the arm as it is); found a message and ``disarm`` -> idle. NOT_HANDLED if
        that waiter is not registered.
        """
        mem, words, entries = self.mem, self.words, self.entries
        cached = self.cache.get(name)  # self.channel(name), inline for a cache hit
        if (cached is not None and words[_W_FLUSHES] == self.generation and words[cached.kind_at] & 0xFFFF == cached.kind_word
                and mem[cached.name_start:cached.name_end] == name):
            index, off = cached.index, cached.offset
        else:
            index = self.channel(name)
            if not index:  # nothing queued; its process's inbox may hold a copy for it (inbox.py)
                return NOT_HANDLED if slot or self.inbox_pending(name) else None
            off = entries + index * _ENTRY_SIZE
        if self.core is not None:  # the same step in C
            where = self.buckets(name)
            data = self.core.pop(off, where.bucket, where.counter_bucket, now, slot, token, disarm, epoch)
            if data is not NOT_HANDLED:
                return data
        _word, _next, head, tail, count, _sibling, waiter, counter = _ENTRY(mem, off)
        if counter and words[(self.entries + counter * _ENTRY_SIZE + _E_A) >> 2]:
            return NOT_HANDLED  # its process's inbox is taken apart first (inbox.py)
        state = 0  # word index of our waiter's field C
        if slot:
            while waiter:
                woff = entries + waiter * _ENTRY_SIZE + _E_A
                w_slot, w_token, armed, following, _high = _WAITER(mem, woff)
                if w_slot == slot and w_token == token:
                    state = (woff + 8) >> 2
                    break
                waiter = following
            else:
                return NOT_HANDLED
        if not head:
            if state and epoch is not None:
                words[state] = epoch & 0xFFFFFFFF
                words[state + _EPOCH_HIGH] = epoch >> 32
            return None
        head_off = self.chunks + head * _CHUNK_SIZE
        following, length, _last, expires = _MESSAGE_AT(mem, head_off + _M_NEXT)
        if expires <= now or length > _FIRST_ROOM:
            return NOT_HANDLED  # expired (the general path drops it and looks further), or long
        start = head_off + _FIRST_DATA
        data = mem[start:start + length]
        if following or waiter:  # the channel stays
            if counter:
                held_at = entries + counter * _ENTRY_SIZE + _E_C
                held = words[held_at >> 2] - 1
            else:  # no counter: the count record repeats the channel's own count
                held_at, held = off + _E_C, count - 1
            commit_dequeue(mem, words, self.journal, "receive", head, words[_W_CHUNKS_USED] - 1, head_off,
                           words[_W_CHUNK_FREE], off + _E_A, following, tail if following else L.NIL,
                           count - 1, held_at, held)
        else:
            writes = [head_off, 4, words[_W_CHUNK_FREE], _H_CHUNK_FREE, 4, head,
                      _H_CHUNKS_USED, 4, words[_W_CHUNKS_USED] - 1]
            if not self.hashed.delete_channel(name, index, counter, writes):
                return NOT_HANDLED
            commit_u32s(mem, words, self.journal, "receive", writes)
        if state and disarm and armed:
            words[state] = L.WAITER_IDLE
        return data
