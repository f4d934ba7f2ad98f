"""The deliveries parked on one queue, found by their channel at once, oldest first per channel.

A late fan-out parks a copy for each of a process's members, and the members take theirs in
whatever order their consumers come back to receive(): one line scanned per take made a
fan-out to 1,000 members a million steps when they came in another order than parked. What
must hold is each channel's order (CHAN-1); no rule reads the order across channels. Kept as
core.per_channel keeps items, a channel's oldest on its own, keyed by channel: an entry does
not name its channel, so one group copy is parked for all its members as one shared entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from ..core.per_channel import PerChannel

Parked = TypeVar("Parked")  # queue_state.Parked: this module reads nothing of it


class ParkedMessages(PerChannel[str, Parked]):
    __slots__ = ()

    def __init__(self, pairs: Iterable[tuple[str, Parked]] = ()) -> None:
        super().__init__()
        for channel, entry in pairs:
            self.append(channel, entry)

    park = PerChannel.append  # (channel, entry): the youngest of its channel
    # One entry for each of a fan-out's members, shared: in one step while none holds anything.
    park_each = PerChannel.append_each
    park_first = PerChannel.appendleft  # first of its channel again (handed to a cancelled receive)
    unpark = PerChannel.popleft  # the oldest parked message of a channel, taken off (None if none)
    forget = PerChannel.remove  # (channel, entry)

    def keeping(self, keep: Callable[[Parked], bool]) -> ParkedMessages[Parked]:
        """Only the entries ``keep`` says yes to, each channel's in their order."""
        return ParkedMessages((channel, entry) for channel, entry in self.items() if keep(entry))

    def oldest_channel(self) -> str | None:
        """The channel of the oldest parked message of some channel."""
        return next(iter(self.first), None)
