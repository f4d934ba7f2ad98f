"""The shared segment: opening or creating it, its lock, crash repair, waker slots, flush.

Crash safety rests on the redo journal (``journal.py``): a process killed at any point leaves
either nothing the others can see or a complete journal. The kernel frees its lock, and the
next process to take the lock replays the journal (replaying twice is harmless) before doing
anything else. flush() re-formats the bookkeeping under a "formatting" state byte, redone
from the start by the next lock holder if the flusher dies halfway.

The lock is a robust pthread mutex in the header (``robust_mutex.py``), or an fcntl lock
where the C library has no robust mutexes (``locking.py``): either way the kernel lets go
of it when its holder dies.
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import posix_ipc

from ..core.errors import ChannelFull, LayerConfigError
from . import layout as L
from . import native, robust_mutex
from .journal import U32, U64, Transaction, pause_point, replay_journal
from .layout import Layout
from .locking import AttachLock, SegmentLock

if TYPE_CHECKING:
    from ._hotcore import Core

if sys.byteorder != "little" or struct.calcsize("I") != 4:  # pragma: no cover
    raise ImportError("reference_layers.ipc needs a little-endian machine with 4-byte C ints "
                      "(its segment is read as native u32 words)")
_STATE_AND_FLAG = struct.Struct("<H").unpack_from  # H_STATE, then H_JOURNAL_FLAG in the high byte
assert L.H_JOURNAL_FLAG == L.H_STATE + 1


class SegmentFull(ChannelFull):
    """The shared segment has no room left for this message (or no free entry for a channel)."""


def segment_name(prefix: str) -> str:
    return f"/asgi-ipc.{prefix}"


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

    # Set while attached (by _open); the lock and the views are gone once detached, so a
    # use after detach() fails loudly instead of touching a closed map.
    layout: Layout
    mem: mmap.mmap
    words: memoryview  # the segment as native u32 words
    lock: SegmentLock | robust_mutex.RobustMutex
    release: Callable[[], None]  # the lock's own release (one call less on every operation)
    _try_acquire: Callable[[], int]
    core: Core | None  # the C hot path (native.py), or None
    _mutex_buffer: ctypes.Array[ctypes.c_char] | None

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
        self._mutex_buffer = None
        mem = None
        try:
            self.attach_lock.hold_shared()
            with SegmentLock(fd):  # the fcntl lock serialises creating and initialising the header
                actual = os.fstat(fd).st_size
                if actual == 0:
                    if not create:
                        raise FileNotFoundError(f"shared segment {self.name} was never initialised")
                    os.ftruncate(fd, size)
                    actual = size
                mem = mmap.mmap(fd, actual)
                self.layout, fresh = self._check_header(mem, actual)
                self.mem = mem
                # every u32 field is 4-byte aligned: read and store them as items of this view
                # (native order: the layout is little-endian, checked at import)
                self.words = memoryview(mem)[:actual - actual % 4].cast("I")
                self.lock = self._segment_lock(mem, fd, fresh)
                self._try_acquire, self.release = self.lock.try_acquire, self.lock.release
                self.core = native.core_for(mem, self.layout)  # the C hot path, or None
                if fresh:  # last: nobody uses a segment before its magic (the state stays NEW: repair formats)
                    mem[L.H_MAGIC:L.H_MAGIC + 8] = L.MAGIC
            with self.lock:  # the lock every operation takes: repair under it
                if mem[L.H_STATE] == L.STATE_RETIRED:
                    raise _Retired
                self._repair()
        except BaseException:
            self._drop_lock()
            if mem is not None:
                self._release_words()
                mem.close()
            shm.close_fd()
            raise
        self._shm = shm
        self.fd = fd

    def _segment_lock(self, mem: mmap.mmap, fd: int, fresh: bool) -> SegmentLock | robust_mutex.RobustMutex:
        """The lock of this segment: a robust mutex in its header where the C library has them."""
        if fresh:
            mem[L.H_LOCK_KIND] = L.LOCK_ROBUST_MUTEX if robust_mutex.available() else L.LOCK_FCNTL
        kind = mem[L.H_LOCK_KIND]
        if kind == L.LOCK_FCNTL:
            return SegmentLock(fd)
        if kind != L.LOCK_ROBUST_MUTEX:
            raise LayerConfigError(f"{self.name}: unknown lock kind {kind}: corrupt")
        if not robust_mutex.available():
            raise LayerConfigError(f"{self.name} is locked with a robust pthread mutex, which this "
                                   "Python cannot use (no robust mutexes in its C library)")
        self._mutex_buffer = (ctypes.c_char * robust_mutex.MUTEX_SIZE).from_buffer(mem, L.H_MUTEX)
        if fresh:
            robust_mutex.initialise(self._mutex_buffer)
        return robust_mutex.RobustMutex(self._mutex_buffer)

    def _drop_lock(self) -> None:
        """Forget the ctypes view of the mutex (an exported buffer keeps the map from closing)."""
        self._mutex_buffer = None
        for name in ("lock", "_try_acquire", "release"):
            self.__dict__.pop(name, None)

    def _release_words(self) -> None:
        """Let go of the u32 view and the C core (an exported buffer keeps the map from closing)."""
        words = self.__dict__.pop("words", None)
        if words is not None:
            words.release()
        core = self.__dict__.pop("core", None)
        if core is not None:
            core.release()

    def _check_header(self, mem, actual: int) -> tuple[Layout, bool]:
        """The layout, and whether the header is fresh (the caller then writes the magic)."""
        magic = mem[L.H_MAGIC:L.H_MAGIC + 8]
        if magic == bytes(8) and mem[L.H_STATE] == L.STATE_NEW:
            layout = Layout.for_size(actual)
            U32.pack_into(mem, L.H_VERSION, L.VERSION)
            U64.pack_into(mem, L.H_SIZE, actual)
            return layout, True
        if magic != L.MAGIC or U32.unpack_from(mem, L.H_VERSION)[0] != L.VERSION:
            raise LayerConfigError(f"{self.name} exists but is not an asgi-ipc segment of layout {L.VERSION}; "
                                   f"remove it with: python -m reference_layers.ipc --cleanup {self.prefix}")
        recorded = U64.unpack_from(mem, L.H_SIZE)[0]
        if recorded != actual:
            raise LayerConfigError(f"{self.name} records size {recorded} but is {actual} bytes: corrupt")
        return Layout.for_size(actual), False

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
        result = self._try_acquire()
        if result:
            self.lock.wait(result)
        if _STATE_AND_FLAG(self.mem, L.H_STATE)[0] != L.STATE_READY:  # not ready, or a journal to replay
            self._repair()

    def repair_if_needed(self) -> None:
        """The second half of acquire(), for a lock the C core took (native.HELD)."""
        if _STATE_AND_FLAG(self.mem, L.H_STATE)[0] != L.STATE_READY:
            self._repair()

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

    def live_wakers(self) -> list[tuple[int, int, int]]:
        """(slot, token, 0) of every registered waker (epoch 0: poke unconditionally); call
        with the lock held."""
        mem, layout, found = self.mem, self.layout, []
        for slot in range(1, L.WAKER_SLOTS):
            off = layout.waker(slot)
            if mem[off + L.W_STATE]:
                found.append((slot, U64.unpack_from(mem, off + L.W_TOKEN)[0], 0))
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

    def take_overflow(self, slot: int) -> bool:
        """Read and clear this waker's overflow flag; the caller then wakes all its receives.

        No lock: the flag is one byte; a flag set before the clear is answered by the wake
        that follows it, one set after the clear stays set for the next wake.
        """
        off = self.layout.waker(slot) + L.W_OVERFLOW
        if not self.mem[off]:
            return False
        self.mem[off] = 0
        return True

    # --- whole segment --------------------------------------------------------------------
    def flush(self) -> list[tuple[int, int, int]]:
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
            self._drop_lock()
            self._release_words()
            self.mem.close()
            self._shm.close_fd()
        return removed


# --- one Segment per prefix per process --------------------------------------------------

@dataclass
class _Shared:
    segment: Segment  # one prefix's Segment in this process
    users: int = 0  # how many layer objects use it


_registry_lock = threading.Lock()
_registry: dict[str, _Shared] = {}  # prefix -> its Segment here
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
    for shared in held:
        try:
            shared.segment.detach()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


atexit.register(_detach_all_at_exit)


def attach(prefix: str, size: int, mode: int) -> Segment:
    with _registry_lock:
        shared = _registry.get(prefix)
        if shared is None:
            shared = _registry[prefix] = _Shared(Segment(prefix, size, mode))
        shared.users += 1
        return shared.segment


def release(segment: Segment) -> bool:
    with _registry_lock:
        shared = _registry.get(segment.prefix)
        if shared is None or shared.segment is not segment:
            return False  # attached before a fork; the parent owns it
        shared.users -= 1
        if shared.users > 0:
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
