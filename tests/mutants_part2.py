"""Broken in-memory layers, each breaking one CHAN/GRP/FLUSH/EXT/ASYNC/LOOP requirement.

tests/test_mutants_part2.py runs the suite against each and expects that requirement to
FAIL: a test that cannot fail proves nothing. Most mutants reproduce a bug real layers
have had (orphaned waiters, per-consumer prefetch, state bound to one event loop, ...).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from reference_layers.base import check_channel_name, check_group_name, non_local_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks these up in this module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)

# --- channels ------------------------------------------------------------------------------

class ReceivesNewestFirst(InMemoryChannelLayer):
    """CHAN-1: a stack instead of a queue (LIFO)."""

    def _pop(self, channel):
        with self._lock:
            if not self._prune(channel, time.monotonic()):
                return None
            queue = self._queues[channel]
            _, data = queue.pop()
            if not queue:
                self._forget(channel)
            return data


class CopiesToTwoWaitingReceivers(InMemoryChannelLayer):
    """CHAN-2: with several receivers waiting, a message is queued once per receiver woken (two)."""

    async def _send(self, channel, data):
        with self._lock:
            waiting = len(self._waiters.get(channel, ()))
        for _ in range(2 if waiting > 1 else 1):
            await super()._send(channel, data)


class SendWaitsForAReceiver(InMemoryChannelLayer):
    """CHAN-3: send returns only once a receiver has taken the message (a rendezvous)."""

    async def _send(self, channel, data):
        await super()._send(channel, data)
        while self._has_message(channel):
            await asyncio.sleep(0.01)


class ReceiveTimesOutWhenIdle(InMemoryChannelLayer):
    """CHAN-4: a receive idle for 2 s fails like a client whose socket read timed out."""

    async def _receive(self, channel):
        try:
            return await asyncio.wait_for(super()._receive(channel), 2.0)
        except asyncio.TimeoutError:
            raise ConnectionError("read timed out after 2.0 s") from None


class CancelStrandsOtherWaiters(InMemoryChannelLayer):
    """CHAN-5: a cancelled receive drops the channel's whole waiter list; the others never wake."""

    async def _receive(self, channel):
        try:
            return await super()._receive(channel)
        except asyncio.CancelledError:
            with self._lock:
                self._waiters.pop(channel, None)
            raise


class ProcessChannelsShareOneQueue(InMemoryChannelLayer):
    """CHAN-6: all of a process's channels p!* share one queue, so p!b can receive p!a's messages."""

    async def _send(self, channel, data):
        await super()._send(non_local_name(channel), data)

    async def _receive(self, channel):
        return await super()._receive(non_local_name(channel))


class PrefetchesForOneReceiver(InMemoryChannelLayer):
    """CHAN-7: each receive also takes the next message into a buffer only the same task reads;
    when several tasks receive from one channel, the buffered messages of finished ones are lost."""

    def __init__(self, **config):
        super().__init__(**config)
        self._prefetched: dict = {}

    async def _receive(self, channel):
        key = (asyncio.current_task(), channel)
        buffered = self._prefetched.get(key)
        if buffered:
            return buffered.popleft()
        data = await super()._receive(channel)
        extra = self._pop(channel)
        if extra is not None:
            self._prefetched.setdefault(key, deque()).append(extra)
        return data


class OrphansWaitersWhenEmptied(InMemoryChannelLayer):
    """CHAN-7: a receive that empties the channel forgets the other waiting receives, which
    then never wake (the bug of channels' own InMemoryChannelLayer, which drops the queue)."""

    async def _receive(self, channel):
        data = await super()._receive(channel)
        if not self._has_message(channel):
            with self._lock:
                self._waiters.pop(channel, None)
        return data


class CancelAfterTakeLosesMessage(InMemoryChannelLayer):
    """CHAN-8: the message leaves the queue before a last await; a cancel there loses it."""

    async def _receive(self, channel):
        data = await super()._receive(channel)
        await asyncio.sleep(0)  # e.g. a round trip to acknowledge the message
        return data


class ServesBusiestChannelFirst(InMemoryChannelLayer):
    """CHAN-9: a quiet channel's message is handed over only once no busy channel has traffic."""

    BUSY_AFTER_SENDS = 50
    QUIET_FOR = 0.3

    def __init__(self, **config):
        super().__init__(**config)
        self._sends: Counter = Counter()
        self._last_send: dict[str, float] = {}

    async def _send(self, channel, data):
        await super()._send(channel, data)
        self._sends[channel] += 1
        self._last_send[channel] = time.monotonic()

    def _flood_elsewhere(self, channel) -> bool:
        now = time.monotonic()
        return any(other != channel and self._sends[other] > self.BUSY_AFTER_SENDS
                   and now - at < self.QUIET_FOR for other, at in list(self._last_send.items()))

    async def _receive(self, channel):
        data = await super()._receive(channel)
        while self._sends[channel] <= self.BUSY_AFTER_SENDS and self._flood_elsewhere(channel):
            await asyncio.sleep(0.01)
        return data


# --- groups --------------------------------------------------------------------------------

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


class GroupDiscardRaisesForNonMember(InMemoryChannelLayer):
    """GRP-2: discarding a channel that is not a member raises KeyError."""

    async def _group_discard(self, group, channel):
        with self._lock:
            if channel not in self._groups.get(group, {}):
                raise KeyError(f"{channel!r} is not in group {group!r}")
        await super()._group_discard(group, channel)


class GroupSendToUnknownGroupRaises(InMemoryChannelLayer):
    """GRP-3: group_send to a group with no members raises KeyError."""

    async def _group_send(self, group, data):
        with self._lock:
            if not self._groups.get(group):
                raise KeyError(f"no such group {group!r}")
        await super()._group_send(group, data)


class OneGroupPerChannel(InMemoryChannelLayer):
    """GRP-4: joining a group leaves every other group."""

    async def _group_add(self, group, channel):
        with self._lock:
            for other, members in self._groups.items():
                if other != group:
                    members.pop(channel, None)
        await super()._group_add(group, channel)


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


# --- flush, extensions, API shape, event loops ----------------------------------------------

class FlushStrandsBlockedReceivers(InMemoryChannelLayer):
    """FLUSH-1: flush forgets the waiting receives, so they never wake again."""

    async def _flush(self):
        await super()._flush()
        with self._lock:
            self._waiters.clear()


class FlushKeepsGroups(InMemoryChannelLayer):
    """FLUSH-1: flush drops messages but leaves group memberships in place."""

    async def _flush(self):
        with self._lock:
            self._queues.clear()
            self._process_channels.clear()


class ExtensionsAsTuple(InMemoryChannelLayer):
    """EXT-1: extensions is a tuple, not the list the spec names."""

    extensions = ("groups", "flush")


class SyncGroupDiscard(InMemoryChannelLayer):
    """ASYNC-1: group_discard is a plain method; ``await layer.group_discard(...)`` fails."""

    def group_discard(self, group, channel):
        check_group_name(group)
        check_channel_name(channel)
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)


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
