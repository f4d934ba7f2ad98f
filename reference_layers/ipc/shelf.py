"""The group copies one layer object holds for its own channels, taken without the segment lock.

Why: when a process takes its inbox apart (inbox.py), a copy for a member with nothing queued
is handed to the layer object that owns the member (only it receives on its ``p!*`` channels),
so members that call receive() one after another read their copies here, not in a locked step
each: across processes every locked step pulls the lock's and the queue's cache lines from
the core that wrote them last.

A copy here is no longer counted by its counter: the owner's own sends and group_sends pass
the room left after these copies, so its calls see exactly the room the spec says; another
process is judged without them (as the Redis layer's held copies, or channels_redis's local
buffer). A receive looks here before its channel's queue, which only holds younger messages:
a copy is shelved only when its member's queue is empty. A flush anywhere drops them: they
belong to the flush count (``H_FLUSHES``) they were taken in. Each is dropped when it expires.

Used from any thread (every ``async_to_sync`` loop): copies are put while the segment lock is
held, so no pop of another thread slips between the inbox and here; a small lock of its own
keeps the per-channel queues (``core.per_channel``, keyed by the names' bytes) whole. A receive
of another thread may have looked here just before a put and be arming now (no sender will poke
it for that copy): ``on_put`` wakes it.
"""

from __future__ import annotations

import threading
from typing import Callable

from ..core.per_channel import PerChannel
from .inbox import Shelved

EXPIRED_SWEEP = 1.0  # seconds past the first expiry before a put sweeps the shelf (each sweep walks it)


class Shelf:
    """Copies per channel, oldest first, all of one flush count (``generation``). A copy is the
    ``Shelved`` its inbox message was taken apart into, shared by all of that message's members."""

    __slots__ = ("generation", "first", "_held", "_by_process", "_earliest", "_lock", "_on_put")

    def __init__(self, on_put: Callable[[list[bytes]], None] | None = None) -> None:
        self._on_put = on_put  # told the channels of each put (after it: receives of other threads look again)
        self.generation = -1
        self._held: PerChannel[bytes, Shelved] = PerChannel()
        self.first = self._held.first  # channel -> its oldest copy (read it for ``in`` tests)
        self._by_process: dict[bytes, int] = {}  # counter ('p!') -> copies held of its channels
        self._earliest = float("inf")  # no copy expires before this
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return self._held.size > 0

    def __len__(self) -> int:
        """Copies held, expired ones included until they are swept or come up."""
        return self._held.size

    def put(self, shelved: Shelved, generation: int, now: float) -> None:
        """Hold ``shelved`` (taken in flush count ``generation``); call with the segment lock held.
        Copies of members that never receive are dropped here as they expire, a second late at
        most: what holds room in no counter must not pile up."""
        channels = shelved.channels
        with self._lock:
            if generation != self.generation:
                self._drop_all(generation)
            elif now >= self._earliest + EXPIRED_SWEEP:
                self._drop_expired(now)
            self._held.append_each(channels, shelved)
            self._earliest = min(self._earliest, shelved.expires)
            self._by_process[shelved.counter] = self._by_process.get(shelved.counter, 0) + len(channels)
        if self._on_put is not None:
            self._on_put(channels)

    def take(self, channel: bytes, now: float, generation: int) -> bytes | None:
        """The oldest unexpired copy of ``channel``, taken off; None if there is none."""
        with self._lock:
            if generation != self.generation:
                self._drop_all(generation)
                return None
            while (shelved := self._pop(channel)) is not None:
                if shelved.expires > now:
                    return shelved.data
            return None

    def held(self, channel: bytes, now: float, generation: int) -> int:
        """Unexpired copies held for the process of ``channel`` (they take room in its capacity)."""
        with self._lock:
            if generation != self.generation:
                self._drop_all(generation)
            elif now >= self._earliest:
                self._drop_expired(now)
            return self._by_process.get(channel[:channel.find(b"!") + 1], 0)

    def backlogs(self, now: float, generation: int) -> dict[bytes, tuple[int, float]]:
        """Per channel holding unexpired copies: how many, and the first one's expiry."""
        with self._lock:
            if generation != self.generation:
                self._drop_all(generation)
            found = {}
            for channel in self.first:
                live = [each.expires for each in self._held.of(channel) if each.expires > now]
                if live:
                    found[channel] = (len(live), live[0])
            return found

    def clear(self) -> None:
        with self._lock:
            self._drop_all(self.generation)

    def _pop(self, channel: bytes) -> Shelved | None:
        shelved = self._held.popleft(channel)
        if shelved is not None:
            left = self._by_process[shelved.counter] - 1
            if left:
                self._by_process[shelved.counter] = left
            else:
                del self._by_process[shelved.counter]
        return shelved

    def _drop_all(self, generation: int) -> None:
        self._held.clear()
        self._by_process.clear()
        self._earliest = float("inf")
        self.generation = generation

    def _drop_expired(self, now: float) -> None:
        """Drop every expired copy (each channel's copies expire oldest first)."""
        for channel in list(self.first):
            while (shelved := self.first.get(channel)) is not None and shelved.expires <= now:
                self._pop(channel)
        self._earliest = min((shelved.expires for shelved in self.first.values()), default=float("inf"))
