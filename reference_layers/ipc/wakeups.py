"""Waking receivers in other processes without busy-polling and without a thread per receive.

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

No wake-up is lost: a receive registers in the same locked step in which it finds the channel
empty, and a sender reads the registrations in the same locked step in which it queues. A
waker whose socket buffer is full gets an *overflow* flag in its slot instead, and then
wakes all its receivers. flush() empties the registrations, so the flusher pokes every waker
with ``*`` ("re-register everything"). Every registered waker of a channel is poked (not just
one), so a receive cancelled after its poke cannot strand a message another process waits for.
"""

from __future__ import annotations

import asyncio
import secrets
import socket

from .segment import Segment

WAKE_ALL = b"*"  # not a valid channel name


def waker_address(prefix: str, token: int) -> bytes:
    return b"\0asgi-ipc." + prefix.encode() + b"." + b"%016x" % token


class Poker:
    """Sends wake-up datagrams (one unbound socket per process and segment)."""

    def __init__(self, segment: Segment):
        self.segment = segment
        self.prefix = segment.prefix
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def poke(self, waiters, payload: bytes) -> None:
        for slot, token in waiters:
            try:
                self.sock.sendto(payload, waker_address(self.prefix, token))
            except BlockingIOError:
                # its buffer is full of pokes: flag it, then poke again so it looks at the flag
                self.segment.set_overflow(slot, token)
                try:
                    self.sock.sendto(WAKE_ALL, waker_address(self.prefix, token))
                except OSError:
                    pass
            except (ConnectionRefusedError, FileNotFoundError):
                self.segment.free_waker(slot, token)  # its process is gone
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


class Listener:
    """One waiting receive: a future the waker resolves when its channel may have a message."""

    __slots__ = ("future",)

    def __init__(self):
        self.future = None

    async def wait(self) -> None:
        self.future = asyncio.get_running_loop().create_future()
        try:
            await self.future
        finally:
            self.future = None

    def wake(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class LoopWaker:
    """The wake-up socket of one event loop; used only from that loop's thread."""

    def __init__(self, segment: Segment, loop: asyncio.AbstractEventLoop):
        self.segment = segment
        self.loop = loop
        self.token = secrets.randbits(64) | 1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(waker_address(segment.prefix, self.token))
        self.sock.setblocking(False)
        self.slot = segment.register_waker(self.token)
        self.listeners: dict[bytes, list[Listener]] = {}
        self.registered: set[bytes] = set()  # channels this waker is listed on in the segment
        loop.add_reader(self.sock.fileno(), self._readable)
        self.closed = False

    def listen(self, channel: bytes) -> Listener:
        listener = Listener()
        self.listeners.setdefault(channel, []).append(listener)
        return listener

    def alone(self, channel: bytes) -> bool:
        return len(self.listeners.get(channel, ())) <= 1

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
        names = set()
        while True:
            try:
                names.add(self.sock.recv(256))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        if WAKE_ALL in names or (self.segment.overflowed(self.slot) and self.segment.take_overflow(self.slot)):
            targets = [listener for group in self.listeners.values() for listener in group]
        else:
            targets = [listener for name in names for listener in self.listeners.get(name, ())]
        for listener in targets:
            listener.wake()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
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
                        future.set_exception(RuntimeError("channel layer closed while receiving"))
                    except Exception:  # noqa: BLE001
                        pass
