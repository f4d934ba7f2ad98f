"""CHAN-*: broken delivery on channels (order, at-most-once, waiting, cancelling).

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from reference_layers.base import non_local_name
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


@breaks("CHAN-1")
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


@breaks("CHAN-2")
class CopiesToTwoWaitingReceivers(InMemoryChannelLayer):
    """CHAN-2: with several receivers waiting, a message is queued once per receiver woken (two)."""

    async def _send(self, channel, data):
        with self._lock:
            waiting = len(self._waiters.get(channel, ()))
        for _ in range(2 if waiting > 1 else 1):
            await super()._send(channel, data)


@breaks("CHAN-3", also=("MSG-2",))  # every test that sends before it receives waits forever
class SendWaitsForAReceiver(InMemoryChannelLayer):
    """CHAN-3: send returns only once a receiver has taken the message (a rendezvous)."""

    async def _send(self, channel, data):
        await super()._send(channel, data)
        while self._has_message(channel):
            await asyncio.sleep(0.01)


@breaks("CHAN-4")
class ReceiveTimesOutWhenIdle(InMemoryChannelLayer):
    """CHAN-4: a receive idle for 2 s fails like a client whose socket read timed out."""

    async def _receive(self, channel):
        try:
            return await asyncio.wait_for(super()._receive(channel), 2.0)
        except asyncio.TimeoutError:
            raise ConnectionError("read timed out after 2.0 s") from None


@breaks("CHAN-5")
class CancelStrandsOtherWaiters(InMemoryChannelLayer):
    """CHAN-5: a cancelled receive drops the channel's whole waiter list; the others never wake."""

    async def _receive(self, channel):
        try:
            return await super()._receive(channel)
        except asyncio.CancelledError:
            with self._lock:
                self._waiters.pop(channel, None)
            raise


@breaks("CHAN-6")
class ProcessChannelsShareOneQueue(InMemoryChannelLayer):
    """CHAN-6: all of a process's channels p!* share one queue, so p!b can receive p!a's messages."""

    async def _send(self, channel, data):
        await super()._send(non_local_name(channel), data)

    async def _receive(self, channel):
        return await super()._receive(non_local_name(channel))


@breaks("CHAN-7")
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


@breaks("CHAN-7")
class OrphansWaitersWhenEmptied(InMemoryChannelLayer):
    """CHAN-7: a receive that empties the channel forgets the other waiting receives, which
    then never wake (the bug of channels' own InMemoryChannelLayer, which drops the queue)."""

    async def _receive(self, channel):
        data = await super()._receive(channel)
        if not self._has_message(channel):
            with self._lock:
                self._waiters.pop(channel, None)
        return data


@breaks("CHAN-8")
class CancelAfterTakeLosesMessage(InMemoryChannelLayer):
    """CHAN-8: the message leaves the queue before a last await; a cancel there loses it."""

    async def _receive(self, channel):
        data = await super()._receive(channel)
        await asyncio.sleep(0)  # e.g. a round trip to acknowledge the message
        return data


@breaks("CHAN-9")
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
