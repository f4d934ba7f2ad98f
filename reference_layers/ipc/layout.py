"""Where everything lives inside the shared segment, as byte offsets.

The segment is one POSIX shared-memory object, ``/asgi-ipc.<prefix>``, laid out as::

    header | journal | waker slots | hash buckets | entries | chunks

- header: magic, layout version, state, journal flag, the segment lock and the allocators'
  counters.
- journal: the redo log of the transaction being committed (see ``journal.Transaction``).
- waker slots: one per waiting event loop in any process: how to poke it awake. Kept
  across flush(), so receivers blocked during a flush can be told to re-register.
- hash buckets + entries: channels, the shared counters of process-specific channels
  (``p!``), groups, group members and registered waiters. Each entry is found by hashing
  its kind and name (a member: its group and channel); buckets chain entries, so an entry
  never moves once placed. Waiters are not hashed: their channel lists them.
- chunks: fixed-size blocks holding message bytes; a message is a chain of chunks, and a
  channel's queue is a linked list of messages (its first chunks).

Index 0 means "none" everywhere, so freshly zeroed memory is a valid empty segment.
Every layout number derives from the segment size alone, so every process computes the
same offsets from the header's size field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"ASGIIPC\x01"
VERSION = 5  # 2: the segment lock lives in the header (H_LOCK_KIND, H_MUTEX); 3: siblings link back (E_G);
# 4: members are hashed by group and channel, and link back (groups.py); 5: a counter's inbox (inbox.py)
NIL = 0

# header fields (offsets)
H_MAGIC = 0  # 8 bytes
H_VERSION = 8  # u32
H_STATE = 12  # u8: see STATE_*
H_JOURNAL_FLAG = 13  # u8: 1 while a committed transaction is being applied
H_LOCK_KIND = 14  # u8: which segment lock every process uses (LOCK_*), fixed at creation
H_SIZE = 16  # u64
H_ENTRY_BUMP = 24  # u32: entries ever handed out since the last format (next fresh index)
H_ENTRY_FREE = 28  # u32: head of the free-entry list
H_CHUNK_BUMP = 32  # u32
H_CHUNK_FREE = 36  # u32
H_CHUNKS_USED = 40  # u32: chunks holding messages (for the emptiness test and the checker)
H_FLUSHES = 44  # u32: how many times the segment was flushed or re-formatted
H_MUTEX = 64  # 64 bytes: the robust pthread mutex (LOCK_ROBUST_MUTEX)
HEADER_SIZE = 4096

STATE_NEW, STATE_FORMATTING, STATE_READY, STATE_RETIRED = 0, 1, 2, 3
LOCK_ROBUST_MUTEX, LOCK_FCNTL = 1, 2

JOURNAL_SIZE = 256 * 1024
JOURNAL_RECORD = struct.Struct("<QH")  # offset, length; the new bytes follow

# waker slots
WAKER_SLOTS = 1024
WAKER_SIZE = 32
W_STATE = 0  # u8: 0 free, 1 in use
W_OVERFLOW = 1  # u8: a poke could not be queued; the waker must wake all its receivers
W_PID = 4  # u32
W_TOKEN = 8  # u64

# entries
ENTRY_SIZE = 144
E_KIND = 0  # u8
E_NAMELEN = 1  # u8
E_NEXT = 4  # u32: next entry in the hash bucket, or in the free list
E_A, E_B, E_C, E_D, E_E, E_F, E_G = 8, 12, 16, 20, 24, 28, 32  # u32 fields, meaning per kind (below)
E_NAME = 36  # up to 100 bytes
MAX_NAME = 100

KIND_FREE = 0
# A channel 'p!x' is in its counter's sibling list both ways (D, G), so it leaves it in O(1) whatever
# the order its process's channels go in.
KIND_CHANNEL = 1  # A head message, B tail message, C count, D next sibling ('p!x'), E waiters, F counter, G previous sibling
KIND_COUNTER = 2  # 'p!': A first, B last message of its inbox (inbox.py), C messages held by all 'p!*' and
# the inbox's copies, D first sibling channel
KIND_GROUP = 3  # A first member, C member count
KIND_MEMBER = 4  # A+B expiry (f64), C its group, D next member, E previous member; name = the channel,
# hashed by group and channel (groups.member_key)
KIND_WAITER = 5  # A waker slot, B low 32 bits of the waker's token, C+E armed epoch, D next waiter
E_EXPIRY = E_A  # f64 over A and B (members)
# A waiter is *armed* while a receive of its loop waits: C holds the low, E the high 32 bits of
# the arm's epoch (odd, so C is never 0 when armed; 0 = idle). Each arm takes a new epoch from
# its loop (wakeups.LoopWaker.epoch), so a sender process pokes each arm at most once.
WAITER_IDLE = 0

# chunks
CHUNK_SIZE = 256
C_NEXT = 0  # u32: next chunk of this message, or of the free list
M_NEXT = 4  # u32 (first chunk): next message in the channel's queue
M_LENGTH = 8  # u32 (first chunk): message length in bytes
M_LAST = 12  # u32 (first chunk): last chunk of this message
M_EXPIRES = 16  # f64 (first chunk): CLOCK_MONOTONIC deadline (shared by all processes on Linux)
FIRST_DATA = 24
MORE_DATA = 4
FIRST_ROOM = CHUNK_SIZE - FIRST_DATA
MORE_ROOM = CHUNK_SIZE - MORE_DATA

MIN_SEGMENT_SIZE = 1024 * 1024
DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Layout:
    size: int
    journal: int
    wakers: int
    buckets: int
    n_buckets: int
    entries: int
    n_entries: int  # usable indices 1..n_entries
    chunks: int
    n_chunks: int  # usable indices 1..n_chunks

    @classmethod
    def for_size(cls, size: int) -> "Layout":
        if size < MIN_SEGMENT_SIZE:
            raise ValueError(f"segment size {size} is below the minimum of {MIN_SEGMENT_SIZE} bytes")
        n_entries = min(max(size // 4096, 1024), 1 << 22)
        journal = HEADER_SIZE
        wakers = journal + JOURNAL_SIZE
        buckets = wakers + WAKER_SLOTS * WAKER_SIZE
        entries = buckets + n_entries * 4
        entries += -entries % 64
        chunks = entries + (n_entries + 1) * ENTRY_SIZE
        chunks += -chunks % CHUNK_SIZE
        n_chunks = (size - chunks) // CHUNK_SIZE - 1
        if n_chunks < 16:
            raise ValueError(f"segment size {size} leaves no room for messages")
        return cls(size, journal, wakers, buckets, n_entries, entries, n_entries, chunks, n_chunks)

    def entry(self, index: int) -> int:
        return self.entries + index * ENTRY_SIZE

    def chunk(self, index: int) -> int:
        return self.chunks + index * CHUNK_SIZE

    def waker(self, slot: int) -> int:
        return self.wakers + slot * WAKER_SIZE  # slots 1..WAKER_SLOTS-1

    @property
    def message_room(self) -> int:
        """The largest message the chunk area could hold if it were empty."""
        return FIRST_ROOM + (self.n_chunks - 1) * MORE_ROOM
