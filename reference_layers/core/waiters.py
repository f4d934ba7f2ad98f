"""The receives waiting on a layer's channels, oldest first per channel (Redis: one capacity
key's receiver; RabbitMQ: one queue's).

A fan-out's members each wait on a channel of their own, one receive at a time, and wait again as
soon as they have their copy: so the first waiter of a channel is kept on its own, with no
container made and dropped per receive, and only a channel's further waiters share a deque.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Waiters:
    """Futures of waiting receives, per channel. A channel has waiters exactly when it is in
    ``first`` (read directly: ``channel in waiters.first``, ``bool(waiters.first)``)."""

    __slots__ = ("first", "_more", "count")

    def __init__(self) -> None:
        self.first: dict[str, asyncio.Future[bytes]] = {}  # channel -> its oldest waiter
        self._more: dict[str, deque[asyncio.Future[bytes]]] = {}  # channel -> its other waiters, oldest first
        self.count = 0  # futures kept here (a done one until it is taken or removed)

    def add(self, channel: str, future: asyncio.Future[bytes]) -> None:
        self.count += 1
        if channel not in self.first:
            self.first[channel] = future
        elif (more := self._more.get(channel)) is not None:
            more.append(future)
        else:
            self._more[channel] = deque((future,))

    def remove(self, channel: str, future: asyncio.Future[bytes]) -> None:
        """Forget ``future`` if it still waits here (it may have been handed its message)."""
        if self.first.get(channel) is future:
            del self.first[channel]
            self.count -= 1
            if self._more:
                self._promote(channel)
            return
        more = self._more.get(channel)
        if more is not None:
            try:
                more.remove(future)
            except ValueError:
                return
            self.count -= 1
            if not more:
                del self._more[channel]

    def hand(self, channel: str, entry: bytes) -> bool:
        """Give ``entry`` to the oldest live waiter of ``channel``; False if it has none."""
        future = self.take(channel)
        if future is None:
            return False
        future.set_result(entry)
        return True

    def take(self, channel: str) -> asyncio.Future[bytes] | None:
        """The oldest live waiter of ``channel``, no longer kept here (None if it has none)."""
        future = self.first.pop(channel, None)
        while future is not None:
            self.count -= 1
            if self._more:  # some channel has more waiters (rare): the next one may be this one's
                self._promote(channel)
            if not future.done():
                return future
            future = self.first.pop(channel, None)
        return None

    def wanted(self) -> dict[str, int]:
        """How many messages each channel's live waiters want."""
        wanted = {channel: 1 for channel, future in self.first.items() if not future.done()}
        for channel, more in self._more.items():
            if live := sum(1 for future in more if not future.done()):
                wanted[channel] = wanted.get(channel, 0) + live
        return wanted

    def fail(self, error: BaseException) -> None:
        """Every waiter gets ``error``; none is left."""
        for future in [*self.first.values(), *(future for more in self._more.values() for future in more)]:
            if not future.done():
                future.set_exception(error)
        self.first.clear()
        self._more.clear()
        self.count = 0

    def _promote(self, channel: str) -> None:
        """The first waiter of ``channel`` left: the next one, if any, is first now."""
        more = self._more.get(channel)
        if more is not None:
            self.first[channel] = more.popleft()
            if not more:
                del self._more[channel]
