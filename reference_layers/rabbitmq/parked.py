"""The deliveries parked on one queue, found by their channel at once, oldest first per channel.

A late fan-out parks a copy for each of a process's members, and the members take theirs in
whatever order their consumers come back to receive(): one line scanned per take made a
fan-out to 1,000 members a million steps when they came in another order than parked. What
must hold is each channel's order (CHAN-1); no rule reads the order across channels. Kept as
core.per_channel keeps items, a channel's oldest on its own, by the entry's own channel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol, TypeVar

from ..core.per_channel import PerChannel


class _Entry(Protocol):
    """What this module needs of a parked delivery (queue_state.Parked)."""

    channel: str


Parked = TypeVar("Parked", bound=_Entry)


class ParkedMessages(PerChannel[str, Parked]):
    __slots__ = ()

    def __init__(self, entries: Iterable[Parked] = ()) -> None:
        super().__init__()
        self.extend(list(entries))

    def park(self, entry: Parked) -> None:
        self.append(entry.channel, entry)

    def extend(self, entries: list[Parked]) -> None:
        """``park`` each, in one call (a fan-out parks a copy for each of its members)."""
        first, more = self.first, self._more
        for entry in entries:
            channel = entry.channel
            if channel not in first:
                first[channel] = entry
            elif (younger := more.get(channel)) is not None:
                younger.append(entry)
            else:
                more[channel] = deque((entry,))
        self.size += len(entries)

    def park_first(self, entry: Parked) -> None:
        """First of its channel again (a message handed to a receive that was cancelled)."""
        self.appendleft(entry.channel, entry)

    unpark = PerChannel.popleft  # the oldest parked message of a channel, taken off (None if none)

    def forget(self, entry: Parked) -> None:
        self.remove(entry.channel, entry)

    def oldest_of_any(self) -> Parked | None:
        """The oldest parked message of some channel."""
        return next(iter(self.first.values()), None)
