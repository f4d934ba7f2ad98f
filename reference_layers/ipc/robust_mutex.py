"""The segment lock as a process-shared *robust* pthread mutex living inside the segment.

Why: every message takes the segment lock twice (send, receive). As an fcntl record lock
that is two system calls per take (about 3-4 µs from Python); an uncontended pthread mutex
is one compare-and-swap in user space (a ctypes call, about 0.2 µs). It keeps the crash
guarantee of the fcntl lock: a *robust* mutex is on its holder's robust-futex list, which
the kernel walks when the holder dies (SIGKILL included), marking the mutex "owner died"
and waking one waiter. The next locker gets ``EOWNERDEAD``, marks the mutex consistent
and repairs the segment from the journal like after any crash (``segment.Segment.acquire``).

Threads of one process are separate owners (the mutex records the thread), so no
``threading.Lock`` is needed in front of it. Uncontended calls go through ``PyDLL`` (they
never block, so keeping the GIL is safe and cheaper); a contended lock waits through
``CDLL`` (the GIL is released while blocked), in slices so Ctrl-C still gets through.

Linux + glibc (or any libc with robust mutexes). Elsewhere ``available()`` is False and
the segment uses the fcntl lock instead (``locking.SegmentLock``); which one a segment uses
is fixed when it is created (``layout.H_LOCK_KIND``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import sys
import time

MUTEX_SIZE = 64  # bytes reserved; pthread_mutex_t is 40 on x86-64, 48 on aarch64
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1
# Trylocks before sleeping in the kernel (each about 0.15 µs, so about 30 µs at most). The lock
# is held for one hot send or receive, a few µs; measured cross-process, most contended takes
# succeed within 8-64 trylocks and nearly all within 128. A sleep instead costs a futex wait
# and wake (a system call on each side) plus the sleeper's wake-up latency, and leaves the
# "waiters" bit set so the next unlock makes a system call too. Bounded: then it blocks.
_SPINS = 200
_WAIT_SLICE = 0.5  # seconds per blocking wait, so signal handlers run while blocked


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _bind():
    if not sys.platform.startswith("linux"):
        return None
    try:
        blocking = ctypes.CDLL(None, use_errno=True)
        quick = ctypes.PyDLL(None)
        needed = ("pthread_mutexattr_init", "pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust",
                  "pthread_mutex_init", "pthread_mutex_trylock", "pthread_mutex_timedlock",
                  "pthread_mutex_unlock", "pthread_mutex_consistent")
        if not all(hasattr(blocking, name) for name in needed):
            return None
    except OSError:  # pragma: no cover - no C library to load
        return None
    return blocking, quick


_LIBS = _bind()


def available() -> bool:
    return _LIBS is not None


def initialise(pointer) -> None:
    """Make a fresh, unlocked robust process-shared mutex at ``pointer`` (creation only)."""
    blocking, _quick = _LIBS
    attr = ctypes.create_string_buffer(64)
    for call, args in ((blocking.pthread_mutexattr_init, ()),
                       (blocking.pthread_mutexattr_setpshared, (_PTHREAD_PROCESS_SHARED,)),
                       (blocking.pthread_mutexattr_setrobust, (_PTHREAD_MUTEX_ROBUST,)),):
        result = call(attr, *args)
        if result:
            raise OSError(result, f"{call.__name__}: {errno.errorcode.get(result, result)}")
    ctypes.memset(pointer, 0, MUTEX_SIZE)
    result = blocking.pthread_mutex_init(pointer, attr)
    if result:
        raise OSError(result, f"pthread_mutex_init: {errno.errorcode.get(result, result)}")


class RobustMutex:
    """``acquire()`` / ``release()`` of the mutex at ``pointer`` (a ctypes pointer into the map)."""

    __slots__ = ("pointer", "try_acquire", "release", "_trylock", "_timedlock", "_consistent")

    def __init__(self, pointer):
        blocking, quick = _LIBS
        self.pointer = pointer
        self._trylock = quick.pthread_mutex_trylock
        self._consistent = quick.pthread_mutex_consistent
        self._timedlock = blocking.pthread_mutex_timedlock
        # The uncontended calls as C-level partials: no Python frame of ours on the hot path.
        self.try_acquire = functools.partial(self._trylock, pointer)  # 0: taken; else pass it to wait()
        self.release = functools.partial(quick.pthread_mutex_unlock, pointer)

    def acquire(self) -> None:
        result = self.try_acquire()
        if result:
            self.wait(result)

    def wait(self, result: int) -> None:
        """Take the mutex after ``try_acquire`` answered ``result`` (busy, or its holder died)."""
        pointer, trylock = self.pointer, self._trylock
        spins = _SPINS
        while result == errno.EBUSY and spins:
            spins -= 1
            result = trylock(pointer)
        deadline = _Timespec()
        while result in (errno.EBUSY, errno.ETIMEDOUT):
            now = time.time() + _WAIT_SLICE
            deadline.tv_sec, deadline.tv_nsec = int(now), int(now % 1 * 1e9)
            result = self._timedlock(pointer, ctypes.byref(deadline))
        if result == errno.EOWNERDEAD:  # its holder died: ours now; the caller repairs
            self._consistent(pointer)
        elif result:
            raise OSError(result, f"segment lock: {errno.errorcode.get(result, result)}")

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()
