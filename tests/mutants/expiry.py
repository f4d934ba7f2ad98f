"""EXP-*: broken message and membership expiry.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

import math
import time

from reference_layers.base import non_local_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.capacity import _CountsSentMinusReceived
from tests.mutants.registry import breaks


@breaks("EXP-1")
class IgnoresExpiry(InMemoryChannelLayer):
    """Breaks EXP-1 (and EXP-2): messages never expire."""

    def __init__(self, **config):
        super().__init__(**config)
        self.expiry = 1_000_000_000


@breaks("EXP-1")
class ExpiresWholeChannel(InMemoryChannelLayer):
    """Breaks EXP-1: expiry per channel, not per message: a message queued behind others
    expires with the oldest of them."""

    def _put(self, channel, data, now, key, capacity):
        super()._put(channel, data, now, key, capacity)
        queue = self._queues[channel]
        if len(queue) > 1:
            queue[-1] = (queue[0][0], queue[-1][1])


@breaks("EXP-2")
class ExpiredMessagesKeepTheirRoom(_CountsSentMinusReceived):
    """Breaks EXP-2: expired messages are never delivered but still count against capacity."""

    def _capacity_key(self, channel):
        return non_local_name(channel)


@breaks("EXP-3")
class GroupsNeverExpire(InMemoryChannelLayer):
    """Breaks EXP-3: group membership lasts forever, whatever group_expiry says."""

    async def _group_add(self, group, channel):
        with self._lock:
            self._groups.setdefault(group, {})[channel] = math.inf


@breaks("EXP-3")
class ReAddDoesNotRenewMembership(InMemoryChannelLayer):
    """Breaks EXP-3: group_add of a member keeps its first expiry time."""

    async def _group_add(self, group, channel):
        with self._lock:
            self._groups.setdefault(group, {}).setdefault(channel, time.monotonic() + self.group_expiry)
