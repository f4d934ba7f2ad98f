"""CAP-*: broken capacity accounting.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

import time
from collections import Counter

from reference_layers.base import CapacityRules
from reference_layers.core.names import non_local_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


@breaks("CAP-1")
class NoCapacity(InMemoryChannelLayer):
    """Breaks CAP-1: never raises ChannelFull."""

    def __init__(self, **config):
        config["capacity"] = 1_000_000
        super().__init__(**config)


@breaks("CAP-2")
class ReceiveKeepsRoomTaken(InMemoryChannelLayer):
    """Breaks CAP-2: counts every message ever sent against capacity, so a receive frees nothing."""

    def __init__(self, **config):
        super().__init__(**config)
        self._ever_sent = Counter()

    def _put(self, channel, data, now, key, capacity):
        if self._ever_sent[channel] >= self.capacities.for_channel(channel):
            raise ChannelFull(f"channel {channel!r} is full")
        super()._put(channel, data, now, key, capacity)
        self._ever_sent[channel] += 1


@breaks("CAP-3")
class IgnoresChannelCapacity(InMemoryChannelLayer):
    """Breaks CAP-3: channel_capacity patterns are accepted and ignored."""

    def __init__(self, channel_capacity=None, **config):
        super().__init__(**config)


class _CountsSentMinusReceived(InMemoryChannelLayer):
    """Capacity kept by this class, outside the layer's own accounting: messages sent to a
    key and not yet received from it; expired messages are never subtracted."""

    def __init__(self, **config):
        super().__init__(**config)
        self._own_capacities = self.capacities
        self.capacities = CapacityRules(1_000_000)  # the layer's own check never trips
        self._queued = Counter()

    def _capacity_key(self, channel):
        raise NotImplementedError

    async def send(self, channel, message):
        key = self._capacity_key(channel)
        if self._queued[key] >= self._own_capacities.for_channel(channel):
            raise ChannelFull(f"channel {channel!r} is full")
        await super().send(channel, message)
        self._queued[key] += 1

    async def receive(self, channel):
        message = await super().receive(channel)
        self._queued[self._capacity_key(channel)] -= 1
        return message


@breaks("CAP-4")
class CapacityPerFullChannelName(_CountsSentMinusReceived):
    """Breaks CAP-4: p!a and p!b each get the full capacity instead of sharing p!'s."""

    def _capacity_key(self, channel):
        return channel


@breaks("CAP-5")
class GroupSendRaisesChannelFull(InMemoryChannelLayer):
    """Breaks CAP-5: group_send lets a full member's ChannelFull escape."""

    async def _group_send(self, group, data):
        now = time.monotonic()
        with self._lock:
            members = list(self._groups.get(group, {}))
            for channel in members:
                self._put(channel, data, now, non_local_name(channel), self.capacities.for_channel(channel))
        for channel in members:
            self._wake_one(channel)
