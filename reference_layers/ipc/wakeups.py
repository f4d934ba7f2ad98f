"""Waking receivers in other processes without busy-polling and without a thread per receive.

(A receive that finds nothing first looks again for a moment, ``spinning.py``; this is how
it sleeps after that, and how a sender wakes it.)

Why datagram sockets: every event loop that has a receive waiting owns one Unix datagram
socket (abstract namespace: no file to clean up; it vanishes with the process) and watches it
with ``loop.add_reader`` — no extra thread, no timer. The loop claims a *waker slot* in the
segment (its token names the socket) and registers itself on each channel it waits for. A
sender, after committing a message, sends the channel's name as one small datagram to each
waker registered on that channel (usually one); the reader callback resolves the futures of
the receives waiting on that name, and they pop the message. A semaphore would need a thread
per waiter (posix_ipc semaphores cannot be watched by a selector); a FIFO per process would
need files and permissions. Datagrams carry no message data, only a channel name, so another
local user who pokes a socket can cause nothing but a spurious re-check.

No wake-up is lost: a receive *arms* its registration in the same locked step in which it
finds the channel empty, and a sender reads the armed registrations in the same locked step
in which it queues. Registrations outlive one receive (a loop receiving on a channel again and
again stays listed; it is dropped once no receive of that loop waits there at the next turn
of the loop), but only armed ones are poked: a receiver busy with the message it just took
costs its senders no syscall. Each arm carries a new *epoch* from its loop, and a sender
process remembers the last epoch it poked per waker: while a poked receiver is still waking
up, that process's further sends do not poke it again; a receive that wakes and finds nothing
arms afresh (a new epoch), so it is poked again. The memory of what was poked lives only in
the sender's own process and a sender never disarms anything, so a sender killed between its
commit and its poke cannot silence the pokes of the senders after it. A waker in the sender's
own process is woken by a direct call (or ``call_soon_threadsafe``), not a datagram. A
waker whose socket buffer is full gets an *overflow* flag in its slot instead, and then
wakes all its receivers. flush() empties the registrations, so the flusher pokes every waker
with ``*`` ("re-register everything"). Every registered waker of a channel is poked (not just
one), so a receive cancelled after its poke cannot strand a message another process waits for.

A group_send pokes each waker once, naming all of its channels the send reached in one
datagram (names apart by a space, which no channel name holds): a process whose event loop
waits on 250 members gets one datagram, not 250 that would overflow its socket's queue
(``net.unix.max_dgram_qlen``, 10 by default) and cost the sender a failing system call and
a locked overflow flag each.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Iterator

from .segment import Segment
from .spinning import SpinBudget, closed_while_receiving

WAKE_ALL = b"*"  # not a valid channel name
NAME_SEPARATOR = b" "  # between the channel names of one datagram; in no channel name
MAX_POKE = 16384  # bytes of names in one datagram: far below a datagram socket's limit
RECEIVE_SIZE = MAX_POKE + 256  # a datagram is read whole (a longer one would be cut)
DROP_DELAY = 0.05  # seconds a loop stays registered on a channel after its last receive there


def waker_address(prefix: str, token: int) -> bytes:
    return b"\0asgi-ipc." + prefix.encode() + b"." + b"%016x" % token


_LOCAL: dict[int, "LoopWaker"] = {}  # token -> this process's wakers, to wake without a datagram


def _forget_local_after_fork() -> None:
    _LOCAL.clear()  # the parent's loops are not the child's


os.register_at_fork(after_in_child=_forget_local_after_fork)


class Poker:
    """Sends wake-up datagrams (one unbound socket per process and segment)."""

    def __init__(self, segment: Segment):
        self.segment = segment
        self.prefix = segment.prefix
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self._addresses: dict[int, bytes] = {}
        self._poked: dict[int, int] = {}  # waker token -> the last armed epoch this process poked

    def _address(self, token: int) -> bytes:
        address = self._addresses.get(token)
        if address is None:
            if len(self._addresses) >= 4096:
                self._addresses.clear()
            address = self._addresses[token] = waker_address(self.prefix, token)
        return address

    def poke(self, waiters, payload: bytes) -> None:
        """Poke ``waiters`` [(slot, token, epoch)], after the step that found them let go of the lock.

        Epoch 0 always pokes; a nonzero one is the arm found armed, and this process pokes each
        arm once: while a receiver wakes up, further sends do not poke it again.
        """
        for slot, token, epoch in waiters:
            if epoch and self._poked.get(token) == epoch:
                continue  # this arm was poked by us already: the receiver will look anyway
            if self._deliver(slot, token, payload):
                self._remember(token, epoch)

    def poke_each(self, pokes_by_channel) -> None:
        """Poke the waiters of many channels [(waiters, channel)] (a group_send): one datagram
        per waker, naming every channel of it that has a new message."""
        poked = self._poked
        names_by_waker: dict[tuple[int, int], list[bytes]] = {}
        last_epoch: dict[int, int] = {}
        for waiters, channel in pokes_by_channel:
            for slot, token, epoch in waiters:
                if epoch and poked.get(token) == epoch:
                    continue  # this arm was poked by us already: the receiver will look anyway
                names_by_waker.setdefault((slot, token), []).append(channel)
                if epoch:
                    last_epoch[token] = epoch
        for (slot, token), names in names_by_waker.items():
            if all(self._deliver(slot, token, payload) for payload in poke_datagrams(names)):
                self._remember(token, last_epoch.get(token, 0))

    def _deliver(self, slot: int, token: int, payload: bytes) -> bool:
        """Wake the waker of ``slot``/``token`` for ``payload``; False if it is gone or unreachable."""
        local = _LOCAL.get(token)
        if local is not None and local.notify(payload):
            return True
        try:
            self.sock.sendto(payload, self._address(token))
        except BlockingIOError:
            # its buffer is full of pokes: flag it, then poke again so it looks at the flag
            self.segment.set_overflow(slot, token)
            try:
                self.sock.sendto(WAKE_ALL, self._address(token))
            except OSError:
                pass
        except (ConnectionRefusedError, FileNotFoundError):
            self.segment.free_waker(slot, token)  # its process is gone
            return False
        except OSError:
            return False
        return True

    def _remember(self, token: int, epoch: int) -> None:
        """This process poked the arm ``epoch`` of waker ``token`` (0: an unconditional poke)."""
        if epoch:
            poked = self._poked
            if len(poked) >= 4096:
                poked.clear()
            poked[token] = epoch

    def close(self) -> None:
        self.sock.close()


def poke_datagrams(names: list[bytes]) -> Iterator[bytes]:
    """``names`` joined by NAME_SEPARATOR, in datagrams of at most MAX_POKE bytes each."""
    batch: list[bytes] = []
    size = 0
    for name in names:
        if batch and size + len(name) + 1 > MAX_POKE:
            yield NAME_SEPARATOR.join(batch)
            batch, size = [], 0
        batch.append(name)
        size += len(name) + 1
    if batch:
        yield NAME_SEPARATOR.join(batch)


class Listener:
    """One waiting receive: a future the waker resolves when its channel may have a message
    (set, and awaited, by the receive while it sleeps: ``IPCChannelLayer._wait_for``)."""

    __slots__ = ("future",)

    def __init__(self):
        self.future: asyncio.Future | None = None

    def wake(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class LoopWaker:
    """The wake-up socket of one event loop; used only from that loop's thread."""

    def __init__(self, segment: Segment, loop: asyncio.AbstractEventLoop, unregister, spin: SpinBudget):
        self.segment = segment
        self._unregister = unregister  # (channel, slot, token): drops a registration
        self.loop = loop
        self.token = secrets.randbits(64) | 1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(waker_address(segment.prefix, self.token))
        self.sock.setblocking(False)
        self.slot = segment.register_waker(self.token)
        self._epoch = 1
        self.listeners: dict[bytes, list[Listener]] = {}
        self.registered: set[bytes] = set()  # channels this waker is (probably) listed on
        self._dropping: set[bytes] = set()  # channels with a drop_later pending
        self.thread = threading.get_ident()
        self.spin = spin  # how long this loop's next waiting receive spins (spinning.py)
        loop.add_reader(self.sock.fileno(), self._readable)
        self.closed = False
        _LOCAL[self.token] = self

    def notify(self, payload: bytes) -> bool:
        """Wake receives of this (same-process) waker for ``payload``; False if it cannot."""
        if self.closed:
            return False
        try:
            names = payload.split(NAME_SEPARATOR)
            if threading.get_ident() == self.thread:
                self._wake(names)
            else:
                self.loop.call_soon_threadsafe(self._wake, names)
        except RuntimeError:  # its loop is closed
            return False
        return True

    def epoch(self) -> int:
        """A new epoch for the next arm (odd, never reused by this waker, hence by its token)."""
        self._epoch += 2
        return self._epoch

    def listening(self, channel: bytes) -> int:
        return len(self.listeners.get(channel, ()))

    def drop_later(self, channel: bytes) -> None:
        """Unregister from ``channel`` shortly, unless a receive waits there again by then: a loop
        that keeps receiving on a channel keeps its registration (and the channel's entry)."""
        if channel not in self._dropping:
            self._dropping.add(channel)
            self.loop.call_later(DROP_DELAY, self._drop, channel)

    def _drop(self, channel: bytes) -> None:
        self._dropping.discard(channel)
        if self.closed or channel in self.listeners or channel not in self.registered:
            return
        self.registered.discard(channel)
        self._unregister(channel, self.slot, self.token)

    def listen(self, channel: bytes) -> Listener:
        listener = Listener()
        self.listeners.setdefault(channel, []).append(listener)
        return listener

    def unlisten(self, channel: bytes, listener: Listener) -> bool:
        """Forget ``listener``; True if no receive of this loop waits on ``channel`` any more."""
        listeners = self.listeners.get(channel)
        if listeners is None:
            return True
        try:
            listeners.remove(listener)
        except ValueError:
            pass
        if listeners:
            return False
        del self.listeners[channel]
        return True

    def _readable(self) -> None:
        # One datagram per call: any more keep the socket readable, so the loop calls again.
        # Reading on until EAGAIN would add a failing system call (and an exception) to every
        # wake-up, and pokes rarely queue up: a sender pokes each arm once.
        try:
            payload = self.sock.recv(RECEIVE_SIZE)
        except OSError:  # nothing after all (BlockingIOError, InterruptedError), or closed
            return
        self._wake(payload.split(NAME_SEPARATOR))  # one name, or a group_send's several

    def _wake(self, names) -> None:
        if self.closed:
            return
        if self.segment.take_overflow(self.slot) or WAKE_ALL in names:
            targets = [listener for group in self.listeners.values() for listener in group]
        else:
            targets = [listener for name in names for listener in self.listeners.get(name, ())]
        for listener in targets:
            listener.wake()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if _LOCAL.get(self.token) is self:
            del _LOCAL[self.token]
        registered, self.registered = self.registered, set()
        for channel in registered:  # leave no registration behind to keep channels alive
            try:
                self._unregister(channel, self.slot, self.token)
            except Exception:  # noqa: BLE001 - the segment may be detached already
                break
        try:
            if not self.loop.is_closed():
                self.loop.remove_reader(self.sock.fileno())
        except Exception:  # noqa: BLE001 - a loop in another thread, already shutting down
            pass
        self.sock.close()
        try:
            self.segment.free_waker(self.slot, self.token)
        except Exception:  # noqa: BLE001 - the segment may be detached already
            pass
        for group in self.listeners.values():
            for listener in group:
                future = listener.future
                if future is not None and not future.done() and not self.loop.is_closed():
                    try:
                        future.set_exception(closed_while_receiving())
                    except Exception:  # noqa: BLE001
                        pass
