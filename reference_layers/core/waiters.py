"""The receives waiting on a layer's channels, oldest first per channel (Redis: one capacity
key's receiver; RabbitMQ: one queue's).

A fan-out's members each wait on a channel of their own, one receive at a time, and wait again as
soon as they have their copy: a channel's first waiter is kept on its own (per_channel.py), with
no container made and dropped per receive.
"""

from __future__ import annotations

import asyncio

from .per_channel import PerChannel


class Waiters(PerChannel[str, "asyncio.Future[bytes]"]):
    """Futures of waiting receives, per channel. A channel has waiters exactly when it is in
    ``first`` (``channel in waiters.first``, ``bool(waiters.first)``); ``size`` counts them, a
    done one until it is taken or removed."""

    __slots__ = ()

    add = PerChannel.append

    def take(self, channel: str) -> asyncio.Future[bytes] | None:
        """The oldest live waiter of ``channel``, no longer kept here (None if it has none)."""
        future = self.popleft(channel)
        while future is not None and future.done():
            future = self.popleft(channel)
        return future

    def hand(self, channel: str, entry: bytes) -> bool:
        """Give ``entry`` to the oldest live waiter of ``channel``; False if it has none."""
        future = self.take(channel)
        if future is None:
            return False
        future.set_result(entry)
        return True

    def wanted(self) -> dict[str, int]:
        """How many messages each channel's live waiters want."""
        wanted = {channel: 1 for channel, future in self.first.items() if not future.done()}
        for channel, more in self._more.items():  # a channel's younger waiters (rare)
            if live := sum(1 for future in more if not future.done()):
                wanted[channel] = wanted.get(channel, 0) + live
        return wanted

    def fail(self, error: BaseException) -> None:
        """Every waiter gets ``error``; none is left."""
        for future in list(self):
            if not future.done():
                future.set_exception(error)
        self.clear()
