"""The redo journal: every change to the segment's bookkeeping, committed crash-safely.

Crash safety rests on one rule: every change to the segment's bookkeeping is made by a
:class:`Transaction` (or :func:`commit_u32s`), a redo log. Changes are collected in this
process, written to the segment's journal, then *committed by a single one-byte store* (the
journal flag), then applied, then the flag is cleared. A process killed before the flag is
set changed nothing the others can see (message bytes may have been copied into chunks that
were free, and stay free); one killed after it left a complete journal, which the next lock
holder replays (``replay_journal``; replaying twice is harmless).

Message bytes are the exception to "everything through the journal": they are copied
straight into chunks that were free when the transaction began and that nothing points to
until the commit, so copying never costs a second write. A transaction therefore never both
frees and allocates chunks (``Transaction.freed`` enforces it). The hot path does the same
with the name and fields of an entry it creates (``hotentries.py``; not its kind or link).
"""

from __future__ import annotations

import os
import struct
import time

from . import layout as L

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
F64 = struct.Struct("<d")
_RECORD = L.JOURNAL_RECORD


# Test hook: "<op>:<point>" makes this process announce itself on stdout and stop at that
# point of that operation's commit, so a test can SIGKILL it there (tests/test_ipc_crash.py).
_PAUSE_AT = os.environ.get("ASGI_IPC_TEST_PAUSE_AT") or None


def pause_point(label: str, point: str) -> None:
    if _PAUSE_AT is not None and f"{label}:{point}" == _PAUSE_AT:
        os.write(1, f"ASGI_IPC_PAUSED {label}:{point}\n".encode())
        while True:
            time.sleep(3600)


class JournalOverflow(RuntimeError):
    """One operation wanted to change more bookkeeping than the journal holds; nothing changed."""


class Transaction:
    """Changes to the segment's bookkeeping, invisible to others until :meth:`commit`.

    Reads see this transaction's own writes. Each field is always read and written at the
    same offset with the same width, so the pending writes are a dict keyed by offset.
    """

    __slots__ = ("mem", "writes", "label", "freed")

    def __init__(self, mem, label: str):
        self.mem = mem
        self.writes: dict[int, bytes] = {}
        self.label = label
        self.freed = False

    def u8(self, off: int) -> int:
        w = self.writes.get(off)
        return self.mem[off] if w is None else w[0]

    def u32(self, off: int) -> int:
        w = self.writes.get(off)
        return U32.unpack_from(self.mem, off)[0] if w is None else U32.unpack(w)[0]

    def f64(self, off: int) -> float:
        w = self.writes.get(off)
        return F64.unpack_from(self.mem, off)[0] if w is None else F64.unpack(w)[0]

    def name(self, off: int) -> bytes:
        w = self.writes.get(off + L.E_NAME)
        if w is not None:
            return w
        start = off + L.E_NAME
        return self.mem[start:start + self.u8(off + L.E_NAMELEN)]

    def set_u8(self, off: int, value: int) -> None:
        self.writes[off] = bytes((value,))

    def set_u32(self, off: int, value: int) -> None:
        self.writes[off] = U32.pack(value)

    def set_f64(self, off: int, value: float) -> None:
        self.writes[off] = F64.pack(value)

    def set_bytes(self, off: int, value: bytes) -> None:
        self.writes[off] = bytes(value)

    def commit(self, journal: int) -> None:
        writes = self.writes
        if not writes:
            return
        parts = []
        for off, data in writes.items():
            parts.append(_RECORD.pack(off, len(data)))
            parts.append(data)
        payload = b"".join(parts)
        if len(payload) + 4 > L.JOURNAL_SIZE:
            raise JournalOverflow(f"{self.label}: {len(payload)} bytes of changes exceed the journal")
        mem = self.mem
        mem[journal + 4:journal + 4 + len(payload)] = payload
        U32.pack_into(mem, journal, len(payload))
        pause_point(self.label, "before-commit")
        mem[L.H_JOURNAL_FLAG] = 1  # the commit point: one byte, so it cannot be torn
        items = list(writes.items())
        half = len(items) // 2
        for off, data in items[:half]:
            mem[off:off + len(data)] = data
        pause_point(self.label, "mid-apply")
        for off, data in items[half:]:
            mem[off:off + len(data)] = data
        mem[L.H_JOURNAL_FLAG] = 0


# One Struct per record count: the journal length, then (offset, 4, value) per u32 field.
_U32_JOURNALS = [struct.Struct("<I" + "QHI" * count) for count in range(33)]


def commit_u32s(mem, words, journal: int, label: str, writes: list[int]) -> None:
    """Commit ``writes`` (offset, 4, value, offset, 4, value, ...: u32 fields) like a Transaction.

    The same journal format (the triples are its records), commit point and pause points as
    :meth:`Transaction.commit`, for callers that computed every new value from memory read
    before any write (so they need no read-your-writes): one pack for the whole journal, then
    each field stored through ``words`` (the segment as aligned u32s, ``Segment.words``).
    """
    count = len(writes) // 3
    layout = _U32_JOURNALS[count]
    layout.pack_into(mem, journal, layout.size - 4, *writes)
    if _PAUSE_AT is None:
        mem[L.H_JOURNAL_FLAG] = 1  # the commit point, as in Transaction.commit
        for position in range(0, len(writes), 3):
            words[writes[position] >> 2] = writes[position + 2]
    else:
        pause_point(label, "before-commit")
        mem[L.H_JOURNAL_FLAG] = 1
        half = count // 2 * 3
        for position in range(0, half, 3):
            words[writes[position] >> 2] = writes[position + 2]
        pause_point(label, "mid-apply")
        for position in range(half, len(writes), 3):
            words[writes[position] >> 2] = writes[position + 2]
    mem[L.H_JOURNAL_FLAG] = 0


# The two most common commits, unrolled (a loop over records costs about twice as much):
# a send to a channel that exists, a receive that leaves its channel in place. Same journal
# format, commit point and pause points as commit_u32s; a record may span several fields.
# ``words`` is the segment as u32s (``Segment.words``): a lone field is stored through it.
_THREE, _TWO = struct.Struct("<III").pack_into, struct.Struct("<II").pack_into
_QUEUE = struct.Struct("<I" + "QHIII" * 2 + "QHI" * 2)
_DEQUEUE = struct.Struct("<I" + "QHII" + "QHI" + "QHIII" + "QHI")
_QUEUE_PACK, _QUEUE_LENGTH = _QUEUE.pack_into, _QUEUE.size - 4
_DEQUEUE_PACK, _DEQUEUE_LENGTH = _DEQUEUE.pack_into, _DEQUEUE.size - 4


def commit_queue(mem, words, journal: int, label: str, bump: int, free: int, used: int, entry: int, head: int,
                 tail: int, count: int, link: int, linked: int, held_at: int, held: int) -> None:
    """Commit a send: the chunk allocator (``bump``, ``free``, ``used`` at H_CHUNK_BUMP), the
    channel's ``head``, ``tail`` and ``count`` (at ``entry``, its field A), one message link
    (``linked`` at ``link``) and one capacity count (``held`` at ``held_at``)."""
    _QUEUE_PACK(mem, journal, _QUEUE_LENGTH, L.H_CHUNK_BUMP, 12, bump, free, used, entry, 12, head, tail, count,
                link, 4, linked, held_at, 4, held)
    if _PAUSE_AT is not None:
        pause_point(label, "before-commit")
    mem[L.H_JOURNAL_FLAG] = 1  # the commit point
    _THREE(mem, L.H_CHUNK_BUMP, bump, free, used)
    _THREE(mem, entry, head, tail, count)
    if _PAUSE_AT is not None:
        pause_point(label, "mid-apply")
    words[link >> 2] = linked
    words[held_at >> 2] = held
    mem[L.H_JOURNAL_FLAG] = 0


def commit_dequeue(mem, words, journal: int, label: str, free: int, used: int, link: int, linked: int, entry: int,
                   head: int, tail: int, count: int, held_at: int, held: int) -> None:
    """Commit a receive: the chunk free list and count (``free``, ``used`` at H_CHUNK_FREE),
    the freed chunk's link (``linked`` at ``link``), the channel's ``head``, ``tail`` and
    ``count`` (at ``entry``) and one capacity count (``held`` at ``held_at``)."""
    _DEQUEUE_PACK(mem, journal, _DEQUEUE_LENGTH, L.H_CHUNK_FREE, 8, free, used, link, 4, linked,
                  entry, 12, head, tail, count, held_at, 4, held)
    if _PAUSE_AT is not None:
        pause_point(label, "before-commit")
    mem[L.H_JOURNAL_FLAG] = 1  # the commit point
    _TWO(mem, L.H_CHUNK_FREE, free, used)
    words[link >> 2] = linked
    if _PAUSE_AT is not None:
        pause_point(label, "mid-apply")
    _THREE(mem, entry, head, tail, count)
    words[held_at >> 2] = held
    mem[L.H_JOURNAL_FLAG] = 0


def replay_journal(mem, journal: int) -> None:
    """Finish the committed transaction of a process that died while applying it."""
    length = U32.unpack_from(mem, journal)[0]
    pos, end = journal + 4, journal + 4 + length
    while pos < end:
        off, size = _RECORD.unpack_from(mem, pos)
        pos += _RECORD.size
        mem[off:off + size] = mem[pos:pos + size]
        pos += size
    mem[L.H_JOURNAL_FLAG] = 0
