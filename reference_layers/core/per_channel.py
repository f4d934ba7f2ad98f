"""Items kept per channel, oldest first, with a channel's oldest on its own.

A fan-out touches one item per member channel at a time (a receive waiting on it, a copy parked
for it): most channels hold one item, so the oldest is kept in a dict of its own and only a
channel's younger ones share a deque, made when a second one comes. No order across channels is
kept: nothing the spec says reads one (CHAN-1 is per channel).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # a channel's name (str; bytes in the IPC layer)
T = TypeVar("T")


class PerChannel(Generic[K, T]):
    """A channel holds items exactly when it is in ``first`` (read directly: ``channel in
    x.first``); ``size`` counts them all."""

    __slots__ = ("first", "_more", "size")

    def __init__(self) -> None:
        self.first: dict[K, T] = {}  # channel -> its oldest item
        self._more: dict[K, deque[T]] = {}  # channel -> its younger items, oldest first
        self.size = 0

    def append(self, channel: K, item: T) -> None:
        self.size += 1
        if channel not in self.first:
            self.first[channel] = item
        elif (more := self._more.get(channel)) is not None:
            more.append(item)
        else:
            self._more[channel] = deque((item,))

    def append_each(self, channels: list[K], item: T) -> None:
        """``item`` for each of ``channels`` (one copy shared by a fan-out's members): in one step
        where none of them holds anything yet, the common case."""
        first = self.first
        if first.keys().isdisjoint(channels):
            first.update(dict.fromkeys(channels, item))
            self.size += len(channels)
        else:
            for channel in channels:
                self.append(channel, item)

    def appendleft(self, channel: K, item: T) -> None:
        """``item`` is ``channel``'s oldest now."""
        older = self.first.get(channel)
        if older is not None:
            self._more.setdefault(channel, deque()).appendleft(older)
        self.first[channel] = item
        self.size += 1

    def popleft(self, channel: K) -> T | None:
        """Take off ``channel``'s oldest item, if it has one."""
        item = self.first.pop(channel, None)
        if item is not None:
            self.size -= 1
            if self._more:  # some channel has younger items (rare): this one's may be among them
                self._promote(channel)
        return item

    def remove(self, channel: K, item: T) -> bool:
        """Take ``item`` off wherever it is among ``channel``'s (False if it is not there)."""
        if self.first.get(channel) is item:
            del self.first[channel]
            self.size -= 1
            if self._more:
                self._promote(channel)
            return True
        more = self._more.get(channel)
        if more is None:
            return False
        try:
            more.remove(item)
        except ValueError:
            return False
        self.size -= 1
        if not more:
            del self._more[channel]
        return True

    def of(self, channel: K) -> Iterator[T]:
        """``channel``'s items, oldest first."""
        first = self.first.get(channel)
        if first is not None:
            yield first
            yield from self._more.get(channel, ())

    def count(self, channel: K) -> int:
        return (channel in self.first) + len(self._more.get(channel, ()))

    def clear(self) -> None:
        self.first.clear()
        self._more.clear()
        self.size = 0

    def __iter__(self) -> Iterator[T]:
        """Every item, each channel's oldest first."""
        for _channel, item in self.items():
            yield item

    def items(self) -> Iterator[tuple[K, T]]:
        """Every (channel, item), each channel's oldest first."""
        for channel, first in list(self.first.items()):
            yield channel, first
            for item in self._more.get(channel, ()):
                yield channel, item

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def _promote(self, channel: K) -> None:
        """``channel``'s oldest left: the next one, if any, is its oldest now."""
        more = self._more.get(channel)
        if more is not None:
            self.first[channel] = more.popleft()
            if not more:
                del self._more[channel]
