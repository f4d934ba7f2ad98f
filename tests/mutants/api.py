"""EXT-1, ASYNC-1, LOOP-1: the API's shape and its life across event loops.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

import asyncio

from reference_layers.base import check_channel_name, check_group_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


@breaks("EXT-1")
class ExtensionsAsTuple(InMemoryChannelLayer):
    """EXT-1: extensions is a tuple, not the list the spec names."""

    extensions = ("groups", "flush")


@breaks("ASYNC-1")
class SyncGroupDiscard(InMemoryChannelLayer):
    """ASYNC-1: group_discard is a plain method; ``await layer.group_discard(...)`` fails."""

    def group_discard(self, group, channel):
        check_group_name(group)
        check_channel_name(channel)
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)


@breaks("LOOP-1")
class BoundToFirstEventLoop(InMemoryChannelLayer):
    """LOOP-1: remembers the first event loop it ran on and refuses every other one."""

    _loop = None

    def _check_loop(self):
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(f"{type(self).__name__} is bound to a different event loop")

    async def _send(self, channel, data):
        self._check_loop()
        await super()._send(channel, data)

    async def _receive(self, channel):
        self._check_loop()
        return await super()._receive(channel)


@breaks("LOOP-1")
class CloseLeavesTaskRunning(InMemoryChannelLayer):
    """LOOP-1: starts a housekeeping task on first send that close() never stops."""

    _housekeeper = None

    async def _send(self, channel, data):
        if self._housekeeper is None or self._housekeeper.done():
            self._housekeeper = asyncio.get_running_loop().create_task(self._housekeep())
        await super()._send(channel, data)

    async def _housekeep(self):
        while True:
            await asyncio.sleep(1)
