"""Flush epochs in a Redis Cluster: one per process capacity key, beside its other keys.

A cluster's group_send leaves one copy per receiving process in the process's inbox
(``P:{K}:i``), and a pop moves them into the process, where a flush run elsewhere cannot delete
them (flushes.py says how one server deals with that). A pop reads the flush epoch in the same
script, so in a cluster the epoch lives in K's slot (``P:{K}:e``) and each process capacity key
has a FlushWatch of its own, told on the sharded channel of that name on K's node. A flush
deletes the prefix's keys on every master, then moves on the epoch of every process key it
found and waits for the answers of the loops that heard it, as flushes.py describes. Normal
channels hold nothing in any process (no inbox, no read-ahead in a cluster): nothing to watch.

A flush finds the keys of every process; the watch it makes for one this loop never received
on is let go once the flush returned (else a process that flushes now and then would keep a
subscription for every process key it ever saw).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from ..core.names import is_process_specific
from .flushes import BellBoard, FlushWatch, Unwatched

UNWATCHED = Unwatched()


class KeyFlushes:
    """One cluster shard's flush watches on one event loop, one per process capacity key.

    ``epoch_key(K)``: K's epoch key (and channel); ``read(channel)``: its value now;
    ``answer(channel, epoch)``: publish without waiting. ``on_flush(K, epoch)`` drops what this
    loop holds of K from another epoch."""

    def __init__(self, bells: BellBoard, epoch_key: Callable[[str], str],
                 read: Callable[[str], Awaitable[bytes | None]], answer: Callable[[bytes, int], None]):
        self._bells = bells
        self._epoch_key = epoch_key
        self._read = read
        self._answer = answer
        self._watches: dict[str, FlushWatch] = {}
        self._used: set[str] = set()  # keys this loop receives on (or counts): their watches stay
        self.on_flush: Callable[[str, int], None] = lambda capacity_key, epoch: None

    def for_key(self, capacity_key: str) -> FlushWatch | Unwatched:
        """The watch of what this loop holds of ``capacity_key``, kept while the loop lives."""
        watch = self._watch(capacity_key)
        if isinstance(watch, FlushWatch):
            self._used.add(capacity_key)
        return watch

    async def announce(self, capacity_key: str, flushed: Callable[[], Awaitable[list]]) -> None:
        """FlushWatch.announce on the key's watch; a watch made only for flushes is let go after."""
        watch = self._watch(capacity_key)
        assert isinstance(watch, FlushWatch)
        try:
            await watch.announce(flushed)
        finally:
            if not watch.announcing and capacity_key not in self._used and self._watches.get(capacity_key) is watch:
                del self._watches[capacity_key]
                await watch.stop()

    def _watch(self, capacity_key: str) -> FlushWatch | Unwatched:
        if not is_process_specific(capacity_key):  # a normal channel: nothing of it is held anywhere
            return UNWATCHED
        watch = self._watches.get(capacity_key)
        if watch is None:
            channel = self._epoch_key(capacity_key)
            watch = FlushWatch(self._bells, channel, partial(self._read, channel), self._answer)
            self._watches[capacity_key] = watch
            watch.on_flush = partial(self._flushed, capacity_key)
        return watch

    def _flushed(self, capacity_key: str, epoch: int) -> None:
        self.on_flush(capacity_key, epoch)

    def close(self) -> None:
        for watch in self._watches.values():
            watch.close()


def process_key_of(key: str, prefix: str) -> str | None:
    """The process capacity key whose hash tag ``key`` (a key of ``prefix``) carries, or None."""
    if not key.startswith(prefix + "{"):
        return None
    end = key.find("}", len(prefix) + 1)
    tag = key[len(prefix) + 1:end] if end > 0 else ""
    return tag if is_process_specific(tag) else None
