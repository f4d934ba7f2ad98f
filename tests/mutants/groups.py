"""GRP-*: broken group membership and fan-out.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

from collections import Counter

from reference_layers.base import check_group_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


@breaks("GRP-1")
class GroupAddNotIdempotent(InMemoryChannelLayer):
    """GRP-1: every group_add is a membership, so a channel added twice gets two copies."""

    def __init__(self, **config):
        super().__init__(**config)
        self._repeats: Counter = Counter()

    async def _group_add(self, group, channel):
        with self._lock:
            already = channel in self._groups.get(group, {})
        await super()._group_add(group, channel)
        if already:
            self._repeats[(group, channel)] += 1

    async def _group_send(self, group, data):
        await super()._group_send(group, data)
        for (repeated_group, channel), times in list(self._repeats.items()):
            if repeated_group == group:
                for _ in range(times):
                    await self._send(channel, data)


@breaks("GRP-2")
class GroupDiscardRaisesForNonMember(InMemoryChannelLayer):
    """GRP-2: discarding a channel that is not a member raises KeyError."""

    async def _group_discard(self, group, channel):
        with self._lock:
            if channel not in self._groups.get(group, {}):
                raise KeyError(f"{channel!r} is not in group {group!r}")
        await super()._group_discard(group, channel)


@breaks("GRP-3")
class GroupSendToUnknownGroupRaises(InMemoryChannelLayer):
    """GRP-3: group_send to a group with no members raises KeyError."""

    async def _group_send(self, group, data):
        with self._lock:
            if not self._groups.get(group):
                raise KeyError(f"no such group {group!r}")
        await super()._group_send(group, data)


@breaks("GRP-4")
class OneGroupPerChannel(InMemoryChannelLayer):
    """GRP-4: joining a group leaves every other group."""

    async def _group_add(self, group, channel):
        with self._lock:
            for other, members in self._groups.items():
                if other != group:
                    members.pop(channel, None)
        await super()._group_add(group, channel)


@breaks("GRP-5")
class GroupSendIgnoresSizeLimit(InMemoryChannelLayer):
    """GRP-5: only send checks message_size_limit; group_send carries any size."""

    async def group_send(self, group, message):
        check_group_name(group)
        limit, self.codec.size_limit = self.codec.size_limit, None
        try:
            data = self.codec.encode(message)
        finally:
            self.codec.size_limit = limit
        await self._group_send(group, data)
