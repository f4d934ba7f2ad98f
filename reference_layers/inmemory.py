"""InMemoryChannelLayer: a single-process channel layer for tests and development.

A drop-in for ``channels.layers.InMemoryChannelLayer`` that keeps the promises of the
network layers: messages are checked and encoded as they would be for Redis (so code that
works here does not break there), receivers each get their own copy, capacity and expiry
hold, and it is safe to use from ``async_to_sync`` in other threads and event loops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

from .core.codec import DEFAULT_MESSAGE_SIZE_LIMIT
from .core.config import reject_unknown_keys
from .core.errors import ChannelFull, ForeignProcessChannel, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .core.layer_core import LayerCore
from .core.names import check_channel_name, is_process_specific, non_local_name
from .core.statistics import STATISTICS_EXTENSION, ChannelStatistics, Counters, LayerStatistics

__all__ = ["InMemoryChannelLayer", "ChannelFull", "MessageTooLarge", "UnserialisableMessage",
           "LayerConfigError", "ForeignProcessChannel"]

_CONFIG_KEYS = ("expiry", "group_expiry", "capacity", "channel_capacity", "message_size_limit")


class InMemoryChannelLayer(LayerCore):
    """Channels, groups, capacity and expiry in this process's memory."""

    # Read by asgi-conformance: this layer cannot carry messages between processes.
    conformance_unsupported = {"cross-process": "the in-memory layer lives inside one process"}
    extensions = [*LayerCore.extensions, STATISTICS_EXTENSION]

    def __init__(self, expiry: float = 60, group_expiry: float = 86400, capacity: int = 100,
                 channel_capacity: Any = None, message_size_limit: int | None = DEFAULT_MESSAGE_SIZE_LIMIT,
                 **unknown: Any) -> None:
        reject_unknown_keys("InMemoryChannelLayer", unknown, _CONFIG_KEYS)
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity,
                         channel_capacity=channel_capacity, message_size_limit=message_size_limit)
        self._lock = threading.Lock()  # async_to_sync callers run in other threads
        self._queues: dict[str, deque[tuple[float, bytes]]] = {}
        self._process_channels: dict[str, set[str]] = {}  # 'p!' -> {'p!a', 'p!b'} with messages
        self._held_counts: dict[str, int] = {}  # capacity key ('p!' or the channel) -> queued messages
        self._waiters: dict[str, deque[asyncio.Future[bytes | None]]] = {}
        self._groups: dict[str, dict[str, float]] = {}
        self._counters = Counters()

    # --- channels ------------------------------------------------------------------------
    async def _send(self, channel: str, data: bytes) -> None:
        key, capacity = non_local_name(channel), self.capacities.for_channel(channel)
        if self._held_counts.get(key, 0) * 2 >= capacity:
            # At least half full: let receivers on this loop drain it before this send goes in, so
            # a sender outrunning them on one loop meets ChannelFull only if they do not keep up.
            # Before the send, so a cancellation here has sent nothing.
            await asyncio.sleep(0)
        with self._lock:
            try:
                if self._put(channel, data, time.monotonic(), key, capacity):
                    return
            except ChannelFull:
                self._counters.channel_full_raised += 1
                raise
        self._wake_one(channel)

    def _put(self, channel: str, data: bytes, now: float, key: str, capacity: int) -> bool:
        """Deliver one message, or raise ChannelFull; caller holds the lock. ``key``: the
        channel's capacity key, ``capacity`` its capacity (a send finds them before the lock).

        True if it went straight to a receiver waiting on this thread's loop (nothing queued
        ahead of it), which then need not be woken to look in the queue: that hand-over
        is what keeps an idle send -> receive as quick as channels' own in-memory layer.
        Capacity is checked first all the same, so both paths refuse the same sends.
        """
        if self._held_counts.get(key, 0) >= capacity and self._prune_key(key, now) >= capacity:
            raise ChannelFull(f"channel {channel!r} is full")
        queue = self._queues.get(channel)
        if queue is None:
            if channel in self._waiters and self._hand_over(channel, data):
                return True
            queue = self._queues[channel] = deque()
            if is_process_specific(channel):
                self._process_channels.setdefault(key, set()).add(channel)
        queue.append((now + self.expiry, data))
        self._held_counts[key] = self._held_counts.get(key, 0) + 1
        return False

    def _hand_over(self, channel: str, data: bytes) -> bool:
        """Give ``data`` to the first receiver waiting on ``channel`` if it runs on this
        thread's loop (its future can be resolved here); caller holds the lock."""
        waiters = self._waiters[channel]
        while waiters and waiters[0].done():
            waiters.popleft()  # cancelled receivers not yet unlisted
        if not waiters:
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if waiters[0].get_loop() is not running:
            return False
        waiters.popleft().set_result(data)
        if not waiters:
            del self._waiters[channel]  # so the receiver's _unlist has nothing to search
        return True

    def _put_back(self, channel: str, data: bytes) -> None:
        """A receiver handed ``data`` was cancelled before it could return it: queue it first
        in line again (over capacity if need be: it was accepted already)."""
        with self._lock:
            key = non_local_name(channel)
            queue = self._queues.get(channel)
            if queue is None:
                queue = self._queues[channel] = deque()
                if is_process_specific(channel):
                    self._process_channels.setdefault(key, set()).add(channel)
            queue.appendleft((time.monotonic() + self.expiry, data))
            self._held_counts[key] = self._held_counts.get(key, 0) + 1

    def _prune_key(self, key: str, now: float) -> int:
        """Drop expired messages of every channel under a capacity key; the count left.

        Only called when the key looks full, so sends stay O(1) however many channels a
        process has (a group_send to 1,000 of them must not be quadratic)."""
        channels = list(self._process_channels.get(key, ())) if key.endswith("!") else [key]
        for channel in channels:
            self._prune(channel, now)
        return self._held_counts.get(key, 0)

    def _prune(self, channel: str, now: float) -> int:
        queue = self._queues.get(channel)
        if queue is None:
            return 0
        dropped = 0
        while queue and queue[0][0] <= now:
            queue.popleft()
            dropped += 1
        if dropped:
            self._release(channel, dropped)
        if not queue:
            self._forget(channel)
            return 0
        return len(queue)

    def _release(self, channel: str, count: int) -> None:
        key = non_local_name(channel)
        left = self._held_counts[key] - count
        if left:
            self._held_counts[key] = left
        else:
            del self._held_counts[key]

    def _forget(self, channel: str) -> None:
        del self._queues[channel]
        if is_process_specific(channel):
            siblings = self._process_channels.get(non_local_name(channel))
            if siblings is not None:
                siblings.discard(channel)
                if not siblings:
                    del self._process_channels[non_local_name(channel)]

    def _pop(self, channel: str) -> bytes | None:
        with self._lock:
            if not self._prune(channel, time.monotonic()):
                return None
            queue = self._queues[channel]
            _, data = queue.popleft()
            self._release(channel, 1)
            if not queue:
                self._forget(channel)
            return data

    async def _receive(self, channel: str) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            data = self._pop(channel)
            if data is not None:
                return data
            waiter: asyncio.Future[bytes | None] = loop.create_future()
            with self._lock:
                self._waiters.setdefault(channel, deque()).append(waiter)
            if self._has_message(channel):  # a send slipped in before we were listed
                self._wake_one(channel)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                # Woken but cancelled before we could take the message (a wake-up from another
                # thread may even still be in flight): pass the message or the wake-up on.
                if waiter.done() and not waiter.cancelled():
                    if (data := waiter.result()) is not None:
                        self._put_back(channel, data)
                    self._wake_one(channel)
                elif self._has_message(channel):
                    self._wake_one(channel)
                raise
            finally:
                self._unlist(channel, waiter)
            if handed is not None:
                return handed

    def _has_message(self, channel: str) -> bool:
        with self._lock:
            return channel in self._queues

    def _unlist(self, channel: str, waiter: asyncio.Future[bytes | None]) -> None:
        with self._lock:
            waiters = self._waiters.get(channel)
            if waiters is None:
                return
            try:
                waiters.remove(waiter)
            except ValueError:
                pass
            if not waiters:
                del self._waiters[channel]

    def _wake_one(self, channel: str) -> None:
        """Wake the first live receiver waiting on ``channel``, whatever loop or thread it is on."""
        with self._lock:
            waiters = self._waiters.get(channel)
            while waiters:
                waiter = waiters.popleft()
                if waiter.done():
                    continue
                loop = waiter.get_loop()
                if loop.is_closed():
                    continue
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if loop is running:
                    waiter.set_result(None)
                else:
                    loop.call_soon_threadsafe(_set_if_pending, waiter)
                return

    # --- groups --------------------------------------------------------------------------
    async def _group_add(self, group: str, channel: str) -> None:
        with self._lock:
            self._groups.setdefault(group, {})[channel] = time.monotonic() + self.group_expiry

    async def _group_discard(self, group: str, channel: str) -> None:
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self._groups[group]

    async def _group_send(self, group: str, data: bytes) -> None:
        """A full member misses the message; the others still get it. A process found full
        stays full under the lock (nothing expires at the same ``now``), so its other members
        at that capacity or less miss it at once, with no pruning of every sibling each."""
        now = time.monotonic()
        delivered = []
        full_at: dict[str, int] = {}  # capacity key -> the largest capacity it was found full at
        with self._lock:
            members = self._groups.get(group, {})
            for channel, expires in list(members.items()):
                if expires <= now:
                    del members[channel]
                    continue
                key, capacity = non_local_name(channel), self.capacities.for_channel(channel)
                try:
                    if full_at.get(key, 0) >= capacity:
                        raise ChannelFull(channel)
                    if self._put(channel, data, now, key, capacity):
                        continue
                except ChannelFull:
                    self._counters.group_deliveries_missed += 1
                    full_at[key] = max(full_at.get(key, 0), capacity)
                    continue
                delivered.append(channel)
            if not members:
                self._groups.pop(group, None)
        for channel in delivered:
            self._wake_one(channel)

    # --- statistics ----------------------------------------------------------------------
    async def statistics(self, channels: list[str] | None = None) -> LayerStatistics:
        """Unexpired messages waiting per channel (``channels``, or every channel holding one)
        and the age of the oldest; ChannelFull and missed group copies counted by this layer.
        No server, so no connections."""
        now = time.monotonic()
        with self._lock:
            names = list(self._queues) if channels is None else [check_channel_name(c) for c in channels]
            table = {}
            for name in names:
                waiting = self._prune(name, now)
                oldest = self._queues[name][0][0] - self.expiry if waiting else None
                table[name] = ChannelStatistics(waiting, None if oldest is None else max(0.0, now - oldest))
            return LayerStatistics(channels=table,
                                   channel_full_raised=self._counters.channel_full_raised,
                                   group_deliveries_missed=self._counters.group_deliveries_missed)

    # --- whole layer ---------------------------------------------------------------------
    async def _flush(self) -> None:
        with self._lock:
            self._queues.clear()
            self._process_channels.clear()
            self._held_counts.clear()
            self._groups.clear()


def _set_if_pending(waiter: asyncio.Future[bytes | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
