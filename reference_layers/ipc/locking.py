"""fcntl locks on the shared segment, which the kernel releases when their holder dies.

Two locks live on the segment's own file descriptor, as fcntl record locks on single bytes:

- byte 0, exclusive, serialises creating and initialising the segment's header. It is also
  the *segment lock* (serialising every change to the segment) of a segment made where the
  C library has no robust mutexes; elsewhere that is ``robust_mutex.RobustMutex`` (an fcntl
  lock costs two system calls per take, a mutex none when uncontended). A process
  killed while holding it (SIGKILL included) loses it at once, because the kernel drops
  record locks when the last descriptor of their holder goes away; the next holder then
  repairs whatever the dead one left half-done (see ``journal.py``).
- the *attach lock* (byte 1) is held shared by every process that has the segment open. A
  process that can take it exclusively knows it is the last one, so it may unlink the segment.

Record locks belong to a process (classic POSIX locks) or to an open file description (Linux
"OFD" locks); either way threads of one process share them. So a ``threading.Lock`` is taken
first: ``async_to_sync`` runs layer calls on other threads and event loops of this process.
OFD locks are used where the OS has them: closing some other descriptor of the same segment
(a consistency check, say) would silently drop a classic POSIX lock.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading

_OFD = hasattr(fcntl, "F_OFD_SETLKW")
_SEGMENT_BYTE, _ATTACH_BYTE = 0, 1


def _flock(kind: int, start: int) -> bytes:
    """A ``struct flock`` for one byte (Linux layout: short, short, off_t, off_t, pid_t)."""
    return struct.pack("@hhqqi4x", kind, os.SEEK_SET, start, 1, 0)


class _RecordLock:
    """One byte of the segment file, locked with OFD locks (Linux) or classic lockf."""

    def __init__(self, fd: int, byte: int):
        self.fd, self.byte = fd, byte
        self._args = {kind: _flock(kind, byte) for kind in (fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK)}

    def lock(self, kind: int, wait: bool = True) -> bool:
        try:
            if _OFD:
                fcntl.fcntl(self.fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, self._args[kind])
            else:  # pragma: no cover - non-Linux fallback
                flags = {fcntl.F_RDLCK: fcntl.LOCK_SH, fcntl.F_WRLCK: fcntl.LOCK_EX}[kind]
                fcntl.lockf(self.fd, flags | (0 if wait else fcntl.LOCK_NB), 1, self.byte)
        except (BlockingIOError, PermissionError):
            if wait:
                raise
            return False
        return True

    def unlock(self) -> None:
        if _OFD:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, self._args[fcntl.F_UNLCK])
        else:  # pragma: no cover
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self.byte)


class SegmentLock:
    """Exclusive lock on the segment, across processes and across this process's threads."""

    def __init__(self, fd: int):
        self._threads = threading.Lock()
        self._record = _RecordLock(fd, _SEGMENT_BYTE)

    def acquire(self) -> None:
        self._threads.acquire()
        try:
            self._record.lock(fcntl.F_WRLCK)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        try:
            self._record.unlock()
        finally:
            self._threads.release()

    def try_acquire(self) -> int:
        """``RobustMutex``'s interface: this lock just waits, then answers 0 (taken)."""
        self.acquire()
        return 0

    def wait(self, result: int) -> None:  # pragma: no cover - try_acquire never declines
        self.acquire()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()


class AttachLock:
    """Shared while attached; exclusive (without waiting) only for the last process to leave."""

    def __init__(self, fd: int):
        self._record = _RecordLock(fd, _ATTACH_BYTE)

    def hold_shared(self) -> None:
        self._record.lock(fcntl.F_RDLCK)

    def try_exclusive(self) -> bool:
        """True if no other process has the segment attached (and then we hold it exclusively)."""
        return self._record.lock(fcntl.F_WRLCK, wait=False)

    def release(self) -> None:
        self._record.unlock()
