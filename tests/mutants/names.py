"""NAME-*: broken channel and group name rules.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

import random
import string

from reference_layers.base import check_channel_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


def _check_shorter_than_99(channel):
    if isinstance(channel, str) and len(channel) >= 99:
        raise TypeError(f"channel name too long: {len(channel)} characters")


@breaks("NAME-1")
class RefusesLongestNames(InMemoryChannelLayer):
    """Breaks NAME-1: an off-by-one length check refuses valid 99-character names."""

    async def send(self, channel, message):
        _check_shorter_than_99(channel)
        await super().send(channel, message)

    async def receive(self, channel):
        _check_shorter_than_99(channel)
        return await super().receive(channel)


@breaks("NAME-2")
class ReceiveSkipsNameCheck(InMemoryChannelLayer):
    """Breaks NAME-2: receive does not check the name, so it waits forever on an invalid one."""

    async def receive(self, channel):
        return self.codec.decode(await self._receive(channel))


@breaks("NAME-3")
class AllowsBangInGroupNames(InMemoryChannelLayer):
    """Breaks NAME-3: group names are checked with the channel rule, which allows one '!'."""

    async def group_add(self, group, channel):
        check_channel_name(group)
        check_channel_name(channel)
        await self._group_add(group, channel)

    async def group_discard(self, group, channel):
        check_channel_name(group)
        check_channel_name(channel)
        await self._group_discard(group, channel)

    async def group_send(self, group, message):
        check_channel_name(group)
        await self._group_send(group, self.codec.encode(message))


@breaks("NAME-4")
class SeededChannelNames(InMemoryChannelLayer):
    """Breaks NAME-4: new_channel() draws from the random module, so random.seed() repeats names."""

    def __init__(self, **config):
        super().__init__(**config)
        # The whole name comes from `random`, client prefix included; receive() still accepts
        # the names this object made, so only NAME-4 can see the bug.
        self.client_prefix = "".join(random.choice("0123456789abcdef") for _ in range(16))
        self.namer.client_prefix = self.client_prefix

    async def new_channel(self, prefix="specific"):
        suffix = "".join(random.choice(string.ascii_letters) for _ in range(12))
        return f"{prefix}.{self.client_prefix}!{suffix}"
