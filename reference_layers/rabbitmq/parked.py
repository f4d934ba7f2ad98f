"""The deliveries parked on one queue, found by their channel at once, oldest first per channel.

A late fan-out parks a copy for each of a process's members, and the members take theirs in
whatever order their consumers come back to receive(): one line scanned per take made a
fan-out to 1,000 members a million steps when they came in another order than parked. What
must hold is each channel's order (CHAN-1); no rule reads the order across channels.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class _Entry(Protocol):
    """What this module needs of a parked delivery (queue_state.Parked)."""

    channel: str


Parked = TypeVar("Parked", bound=_Entry)


class ParkedMessages(Generic[Parked]):
    """A channel's oldest parked message is kept on its own (a fan-out parks one per member, so
    most channels have one), its younger ones in a deque."""

    __slots__ = ("_first", "_more", "_live")

    def __init__(self, entries: Iterable[Parked] = ()) -> None:
        self._first: dict[str, Parked] = {}  # channel -> its oldest parked message
        self._more: dict[str, collections.deque[Parked]] = {}  # channel -> its younger ones, oldest first
        self._live = 0
        self.extend(list(entries))

    def append(self, entry: Parked) -> None:
        channel = entry.channel
        if channel not in self._first:
            self._first[channel] = entry
        else:
            self._more.setdefault(channel, collections.deque()).append(entry)
        self._live += 1

    def extend(self, entries: list[Parked]) -> None:
        """``append`` each, in one call (a fan-out parks a copy for each of its members)."""
        first, more = self._first, self._more
        for entry in entries:
            channel = entry.channel
            if channel not in first:
                first[channel] = entry
            else:
                more.setdefault(channel, collections.deque()).append(entry)
        self._live += len(entries)

    def appendleft(self, entry: Parked) -> None:
        """First of its channel again (a message handed to a receive that was cancelled)."""
        older = self._first.get(entry.channel)
        if older is not None:
            self._more.setdefault(entry.channel, collections.deque()).appendleft(older)
        self._first[entry.channel] = entry
        self._live += 1

    def unpark(self, channel: str) -> Parked | None:
        """Take off the oldest parked message of ``channel``, if any."""
        entry = self._first.pop(channel, None)
        if entry is not None:
            self._live -= 1
            if self._more:
                self._promote(channel)
        return entry

    def remove(self, entry: Parked) -> None:
        channel = entry.channel
        if self._first.get(channel) is entry:
            del self._first[channel]
            self._promote(channel)
        else:
            more = self._more[channel]
            more.remove(entry)
            if not more:
                del self._more[channel]
        self._live -= 1

    def of(self, channel: str) -> Iterator[Parked]:
        """``channel``'s parked messages, oldest first."""
        first = self._first.get(channel)
        if first is not None:
            yield first
            yield from self._more.get(channel, ())

    def count(self, channel: str) -> int:
        return (channel in self._first) + len(self._more.get(channel, ()))

    def first(self) -> Parked | None:
        """The oldest parked message of some channel."""
        return next(iter(self._first.values()), None)

    def clear(self) -> None:
        self._first.clear()
        self._more.clear()
        self._live = 0

    def __iter__(self) -> Iterator[Parked]:
        """Every parked message, each channel's oldest first."""
        for channel, first in list(self._first.items()):
            yield first
            yield from self._more.get(channel, ())

    def __len__(self) -> int:
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0

    def _promote(self, channel: str) -> None:
        """``channel``'s oldest left: the next one, if any, is its oldest now."""
        more = self._more.get(channel)
        if more is not None:
            self._first[channel] = more.popleft()
            if not more:
                del self._more[channel]
