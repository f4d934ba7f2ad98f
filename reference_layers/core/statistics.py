"""What ``await layer.statistics()`` answers, the same shape for every reference layer.

Tests and operators read a layer through this instead of its private fields: the messages
waiting per channel and the age of the oldest, how often ``ChannelFull`` was raised, how many
group deliveries were missed because a member was full (CAP-5 keeps that silent to the
sender, so it is counted here), and the state of each server connection.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum

STATISTICS_EXTENSION = "statistics"


class ConnectionState(str, Enum):
    """How this process's connection to one server stands, as far as the layer knows."""

    CONNECTED = "connected"
    NOT_CONNECTED = "not connected"  # never opened yet on this event loop, or closed by the layer
    LOST = "lost"  # it was open and the server went away; the next call connects again


@dataclass(frozen=True)
class ChannelStatistics:
    """One channel: unexpired messages waiting, and how long the oldest of them has waited."""

    waiting: int
    oldest_age: float | None  # seconds; None when nothing waits


@dataclass(frozen=True)
class LayerStatistics:
    """A snapshot: channels on the server(s), counters of this layer object, connections."""

    channels: dict[str, ChannelStatistics] = field(default_factory=dict)
    channel_full_raised: int = 0  # ChannelFull raised by send() of this layer object
    group_deliveries_missed: int = 0  # group_send copies a full member did not get (CAP-5)
    connections: dict[str, ConnectionState] = field(default_factory=dict)  # server -> state

    def to_json(self) -> str:
        """For the command line: states as their words, channels sorted."""
        data = asdict(self)
        data["channels"] = dict(sorted(data["channels"].items()))
        data["connections"] = {name: state.value for name, state in self.connections.items()}
        return json.dumps(data, indent=2)


@dataclass
class Counters:
    """The two counters a layer object keeps for :class:`LayerStatistics`."""

    channel_full_raised: int = 0
    group_deliveries_missed: int = 0
