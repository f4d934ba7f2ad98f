"""The shared segment: opening or creating it, its lock, crash repair, and transactions.

Crash safety rests on one rule: every change to the segment's bookkeeping is made by a
:class:`Transaction`, a redo log. Changes are collected in this process, written to the
segment's journal, then *committed by a single one-byte store* (the journal flag), then
applied, then the flag is cleared. A process killed before the flag is set changed nothing
the others can see (message bytes may have been copied into chunks that were free, and stay
free); one killed after it left a complete journal. The kernel drops its lock, and the next
process to take the lock replays the journal (replaying twice is harmless) before doing
anything else. flush() re-formats the bookkeeping under a "formatting" state byte, redone
from the start by the next lock holder if the flusher dies halfway.

Message bytes are the exception to "everything through the journal": they are copied
straight into chunks that were free when the transaction began and that nothing points to
until the commit, so copying never costs a second write. A transaction therefore never both
frees and allocates chunks (``Transaction.freed`` enforces it).
"""

from __future__ import annotations

import atexit
import mmap
import os
import struct
import threading
import time

import posix_ipc

from ..base import ChannelFull, LayerConfigError
from . import layout as L
from .layout import Layout
from .locking import AttachLock, SegmentLock

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
F64 = struct.Struct("<d")
_RECORD = L.JOURNAL_RECORD

# Test hook: "<op>:<point>" makes this process announce itself on stdout and stop at that
# point of that operation's commit, so a test can SIGKILL it there (tests/test_ipc_crash.py).
_PAUSE_AT = os.environ.get("ASGI_IPC_TEST_PAUSE_AT") or None


def pause_point(label: str, point: str) -> None:
    if _PAUSE_AT is not None and _PAUSE_AT == f"{label}:{point}":
        os.write(1, f"ASGI_IPC_PAUSED {label}:{point}\n".encode())
        while True:
            time.sleep(3600)


class SegmentFull(ChannelFull):
    """The shared segment has no room left for this message (or no free entry for a channel)."""


class JournalOverflow(RuntimeError):
    """One operation wanted to change more bookkeeping than the journal holds; nothing changed."""


def segment_name(prefix: str) -> str:
    return f"/asgi-ipc.{prefix}"


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
_U32_JOURNALS = [struct.Struct("<I" + "QHI" * count) for count in range(17)]


def commit_u32s(mem, journal: int, label: str, writes: list[int]) -> None:
    """Commit ``writes`` (offset, 4, value, offset, 4, value, ...: u32 fields) like a Transaction.

    The same journal format (the triples are its records), commit point and pause points as
    :meth:`Transaction.commit`, for callers that computed every new value from memory read
    before any write (so they need no read-your-writes): one pack for the whole journal.
    """
    count = len(writes) // 3
    layout = _U32_JOURNALS[count]
    layout.pack_into(mem, journal, layout.size - 4, *writes)
    pause_point(label, "before-commit")
    mem[L.H_JOURNAL_FLAG] = 1  # the commit point, as in Transaction.commit
    pack_into = U32.pack_into
    half = count // 2 * 3
    for position in range(0, half, 3):
        pack_into(mem, writes[position], writes[position + 2])
    pause_point(label, "mid-apply")
    for position in range(half, len(writes), 3):
        pack_into(mem, writes[position], writes[position + 2])
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


def format_bookkeeping(mem, layout: Layout) -> None:
    """Empty every channel and group (flush, or first use); waker slots are kept."""
    mem[L.H_STATE] = L.STATE_FORMATTING
    mem[L.H_JOURNAL_FLAG] = 0
    mem[layout.buckets:layout.buckets + 4 * layout.n_buckets] = bytes(4 * layout.n_buckets)
    pause_point("flush", "mid-format")
    for field, value in ((L.H_ENTRY_BUMP, 1), (L.H_ENTRY_FREE, L.NIL), (L.H_CHUNK_BUMP, 1),
                         (L.H_CHUNK_FREE, L.NIL), (L.H_CHUNKS_USED, 0)):
        U32.pack_into(mem, field, value)
    U32.pack_into(mem, L.H_FLUSHES, U32.unpack_from(mem, L.H_FLUSHES)[0] + 1)
    mem[L.H_STATE] = L.STATE_READY


class _Retired(Exception):
    pass


class Segment:
    """This process's view of ``/asgi-ipc.<prefix>``: the mapping, the locks, transactions.

    Opening takes the attach lock shared (so the last process out can tell it is last),
    creates the object with ``mode`` (0600 by default) if it does not exist, and formats it
    if nobody has yet.
    """

    def __init__(self, prefix: str, size: int, mode: int, create: bool = True):
        self.prefix = prefix
        self.name = segment_name(prefix)
        for _ in range(100):
            try:
                self._open(size, mode, create)
                break
            except _Retired:
                continue  # the last process unlinked it as we opened it: open the new one
        else:  # pragma: no cover
            raise RuntimeError(f"could not attach to {self.name}: it keeps being removed")
        self.pid = os.getpid()

    def _open(self, size: int, mode: int, create: bool) -> None:
        try:
            shm = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREAT if create else 0, mode=mode)
        except posix_ipc.ExistentialError:
            raise FileNotFoundError(f"no shared segment {self.name}") from None
        except posix_ipc.PermissionsError as exc:
            raise LayerConfigError(
                f"cannot open shared segment {self.name}: {exc} (another user's prefix? pick another prefix)") from None
        fd = shm.fd
        self.attach_lock = AttachLock(fd)
        self.lock = SegmentLock(fd)
        try:
            self.attach_lock.hold_shared()
            with self.lock:
                actual = os.fstat(fd).st_size
                if actual == 0:
                    if not create:
                        raise FileNotFoundError(f"shared segment {self.name} was never initialised")
                    os.ftruncate(fd, size)
                    actual = size
                mem = mmap.mmap(fd, actual)
                try:
                    self.layout = self._check_header(mem, actual)
                except BaseException:
                    mem.close()
                    raise
                self.mem = mem
                if mem[L.H_STATE] == L.STATE_RETIRED:
                    mem.close()
                    raise _Retired
                self._repair()
        except BaseException:
            shm.close_fd()
            raise
        self._shm = shm
        self.fd = fd

    def _check_header(self, mem, actual: int) -> Layout:
        magic = mem[L.H_MAGIC:L.H_MAGIC + 8]
        if magic == bytes(8) and mem[L.H_STATE] == L.STATE_NEW:
            layout = Layout.for_size(actual)
            U32.pack_into(mem, L.H_VERSION, L.VERSION)
            U64.pack_into(mem, L.H_SIZE, actual)
            mem[L.H_MAGIC:L.H_MAGIC + 8] = L.MAGIC  # the state byte is still NEW: _repair formats
            return layout
        if magic != L.MAGIC or U32.unpack_from(mem, L.H_VERSION)[0] != L.VERSION:
            raise LayerConfigError(f"{self.name} exists but is not an asgi-ipc segment of layout {L.VERSION}; "
                                   f"remove it with: python -m reference_layers.ipc --cleanup {self.prefix}")
        recorded = U64.unpack_from(mem, L.H_SIZE)[0]
        if recorded != actual:
            raise LayerConfigError(f"{self.name} records size {recorded} but is {actual} bytes: corrupt")
        return Layout.for_size(actual)

    @property
    def size(self) -> int:
        return self.layout.size

    # --- the lock and repair --------------------------------------------------------------
    def _repair(self) -> None:
        """Called with the lock held: finish whatever a dead holder left half-done."""
        mem = self.mem
        if mem[L.H_STATE] != L.STATE_READY:
            format_bookkeeping(mem, self.layout)
        elif mem[L.H_JOURNAL_FLAG]:
            replay_journal(mem, self.layout.journal)

    def acquire(self) -> None:
        self.lock.acquire()
        mem = self.mem
        if mem[L.H_JOURNAL_FLAG] or mem[L.H_STATE] != L.STATE_READY:
            self._repair()

    def release(self) -> None:
        self.lock.release()

    def locked(self):
        """``with segment.locked():`` — the segment lock, repaired on entry."""
        return _Locked(self)

    def transaction(self, label: str) -> Transaction:
        return Transaction(self.mem, label)

    def commit(self, tx: Transaction) -> None:
        tx.commit(self.layout.journal)

    # --- waker slots (no journal: claiming or freeing one is a single byte store) --------
    def register_waker(self, token: int) -> int:
        with self.locked():
            mem, layout = self.mem, self.layout
            for slot in range(1, L.WAKER_SLOTS):
                off = layout.waker(slot)
                if mem[off + L.W_STATE] == 0:
                    U32.pack_into(mem, off + L.W_PID, os.getpid() & 0xFFFFFFFF)
                    U64.pack_into(mem, off + L.W_TOKEN, token)
                    mem[off + L.W_OVERFLOW] = 0
                    mem[off + L.W_STATE] = 1
                    return slot
        raise SegmentFull(f"{self.name}: all {L.WAKER_SLOTS - 1} waker slots are in use "
                          "(too many event loops waiting at once)")

    def free_waker(self, slot: int, token: int) -> None:
        with self.locked():
            off = self.layout.waker(slot)
            if self.mem[off + L.W_STATE] and U64.unpack_from(self.mem, off + L.W_TOKEN)[0] == token:
                self.mem[off + L.W_STATE] = 0

    def live_wakers(self) -> list[tuple[int, int]]:
        """(slot, token) of every registered waker; call with the lock held."""
        mem, layout, found = self.mem, self.layout, []
        for slot in range(1, L.WAKER_SLOTS):
            off = layout.waker(slot)
            if mem[off + L.W_STATE]:
                found.append((slot, U64.unpack_from(mem, off + L.W_TOKEN)[0]))
        return found

    def waker_token(self, slot: int) -> int | None:
        """The token of the waker in ``slot`` now (racy read: a hint, checked by the caller)."""
        off = self.layout.waker(slot)
        if not self.mem[off + L.W_STATE]:
            return None
        return U64.unpack_from(self.mem, off + L.W_TOKEN)[0]

    def set_overflow(self, slot: int, token: int) -> None:
        with self.locked():
            off = self.layout.waker(slot)
            if self.mem[off + L.W_STATE] and U64.unpack_from(self.mem, off + L.W_TOKEN)[0] == token:
                self.mem[off + L.W_OVERFLOW] = 1

    def overflowed(self, slot: int) -> bool:
        return bool(self.mem[self.layout.waker(slot) + L.W_OVERFLOW])

    def take_overflow(self, slot: int) -> bool:
        with self.locked():
            off = self.layout.waker(slot) + L.W_OVERFLOW
            was = self.mem[off]
            self.mem[off] = 0
            return bool(was)

    # --- whole segment --------------------------------------------------------------------
    def flush(self) -> list[tuple[int, int]]:
        """Empty every channel and group; returns the wakers to tell (they must re-register)."""
        with self.locked():
            format_bookkeeping(self.mem, self.layout)
            return self.live_wakers()

    def is_empty(self) -> bool:
        """No message and no group membership (call with the lock held)."""
        mem, layout = self.mem, self.layout
        if U32.unpack_from(mem, L.H_CHUNKS_USED)[0]:
            return False
        bump = U32.unpack_from(mem, L.H_ENTRY_BUMP)[0]
        return not any(mem[layout.entry(i) + L.E_KIND] == L.KIND_GROUP for i in range(1, bump))

    def detach(self, unlink_if_last: bool = True) -> bool:
        """Close this process's view; the last process out unlinks an empty segment.

        Returns True if the segment was removed. A segment still holding messages or group
        members is kept for the next process (its messages expire as usual).
        """
        removed = False
        try:
            if unlink_if_last and self.attach_lock.try_exclusive():
                with self.locked():
                    if self.is_empty():
                        self.mem[L.H_STATE] = L.STATE_RETIRED
                        try:
                            posix_ipc.unlink_shared_memory(self.name)
                        except posix_ipc.ExistentialError:
                            pass
                        removed = True
        finally:
            self.mem.close()
            self._shm.close_fd()
        return removed


# --- one Segment per prefix per process --------------------------------------------------

_registry_lock = threading.Lock()
_registry: dict[str, list] = {}  # prefix -> [Segment, users]
FORK_GENERATION = [0]


def _forget_after_fork() -> None:
    """A forked child must not share its parent's lock (same open file): attach afresh."""
    global _registry_lock
    _registry_lock = threading.Lock()
    _registry.clear()
    FORK_GENERATION[0] += 1


os.register_at_fork(after_in_child=_forget_after_fork)


def _detach_all_at_exit() -> None:
    """Interpreter exit counts as close: the last process out removes an empty segment."""
    with _registry_lock:
        held = list(_registry.values())
        _registry.clear()
    for segment, _users in held:
        try:
            segment.detach()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


atexit.register(_detach_all_at_exit)


def attach(prefix: str, size: int, mode: int) -> Segment:
    with _registry_lock:
        held = _registry.get(prefix)
        if held is None:
            held = _registry[prefix] = [Segment(prefix, size, mode), 0]
        held[1] += 1
        return held[0]


def release(segment: Segment) -> bool:
    with _registry_lock:
        held = _registry.get(segment.prefix)
        if held is None or held[0] is not segment:
            return False  # attached before a fork; the parent owns it
        held[1] -= 1
        if held[1] > 0:
            return False
        del _registry[segment.prefix]
        return segment.detach()


class _Locked:
    __slots__ = ("segment",)

    def __init__(self, segment: Segment):
        self.segment = segment

    def __enter__(self):
        self.segment.acquire()
        return self.segment

    def __exit__(self, *exc_info):
        self.segment.release()
