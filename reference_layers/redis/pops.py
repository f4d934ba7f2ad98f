"""A pop on the wire (scripts.py's POP), read and shelved the moment its reply comes."""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

from .copies import PopReply, read_pop
from .shelf import CopyShelf


class Flushes(Protocol):
    """A capacity key's flush epoch as this loop knows it (flushes.FlushWatch, or Unwatched)."""

    def admits(self, epoch: int) -> bool: ...

    def current_at(self, now: float) -> bool: ...


class Popper(Protocol):
    """A shard, as far as a pop needs it (shard.ShardClient, cluster.ClusterShard)."""

    def pop_now(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]] | None: ...

    async def start_pop(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]]: ...

    def flushes_for(self, capacity_key: str) -> Flushes: ...


async def pop_one(shard: Popper, key: str, channel: str, shelf: CopyShelf,
                  give_back: Callable[[str, bytes], None]) -> list[tuple[str, bytes]]:
    """Pop one message of ``channel`` (capacity key ``key``) from the calling task: the messages
    the pop took for it. Cancelled while the pop is on the wire, what it took goes to ``give_back``."""
    wanted = {channel: 1}
    raw, _ = await shard.start_pop(key, wanted)
    pop = Pop(raw, wanted, key, shelf, shard.flushes_for(key))
    try:
        return (await pop.ready).messages
    except asyncio.CancelledError:
        try:
            messages = (await pop.collect()).messages
        except Exception:  # noqa: BLE001 - no reply: it took nothing
            raise asyncio.CancelledError from None
        for popped_channel, entry in messages:
            give_back(popped_channel, entry)
        raise


def pop_behind(shard: Popper, keys: list[str], shelf: CopyShelf, pops: list[Pop],
               then: Callable[[], None] | None) -> Callable[[], None]:
    """An ``after_write`` hook: ``then()``, then a pop of each of ``keys`` (wanting nothing: all
    held) queued on ``shard`` right behind the script just written, so it finds what that
    pushed; each Pop goes into ``pops``, its copies shelved as its reply comes."""
    def after_write() -> None:
        if then is not None:
            then()
        for key in keys:
            queued = shard.pop_now(key, {})
            if queued is not None:
                pops.append(Pop(queued[0], {}, key, shelf, shard.flushes_for(key)))

    return after_write


class Pop:
    """A pop on the wire. Its reply is read, and its held copies shelved, as soon as it arrives:
    in a callback, not in the task awaiting it, because pops of one connection reply in order,
    so copies are shelved in the order the server drained them, before a later pop's messages
    are handed to anyone. ``ready`` is that read reply; awaiting it (not the reply itself) lets a
    cancelled awaiter still collect what the pop took, with ``collect``."""

    def __init__(self, raw: asyncio.Future, wanted: dict[str, int], capacity_key: str, shelf: CopyShelf,
                 flushes: Flushes):
        self._raw = raw
        self._flushes = flushes  # may what a pop of this flush epoch left held be kept (flushes.py)
        self.wanted = wanted
        self.capacity_key = capacity_key
        self._shelf = shelf
        self._loop = asyncio.get_running_loop()
        self._read: PopReply | BaseException | None = None
        self.ready: asyncio.Future = self._loop.create_future()
        raw.add_done_callback(self._settle)

    def _settle(self, raw: asyncio.Future) -> None:
        if self._read is None:
            if raw.cancelled():
                self._read = asyncio.CancelledError()
            elif (error := raw.exception()) is not None:
                self._read = error
            else:
                try:
                    self._read = read_pop(raw.result(), self.wanted, self.capacity_key, self._loop.time(),
                                          self._shelf.channels_held)
                except Exception as exc:  # noqa: BLE001 - an unreadable reply: the awaiter hears of it
                    self._read = exc
                else:
                    if self._flushes.admits(self._read.epoch):  # else a flush came after the pop: dropped
                        self._shelf.put(self._read.held, self._flushes.current_at)
        if not self.ready.done():
            if isinstance(self._read, BaseException):
                self.ready.set_exception(self._read)
            else:
                self.ready.set_result(self._read)

    async def collect(self) -> PopReply:
        """The read reply, for an awaiter of ``ready`` that was cancelled: what the pop took must
        not be lost with it."""
        try:
            await self._raw
        except BaseException:  # noqa: BLE001 - the error is the read reply's, raised below
            pass
        self._settle(self._raw)
        if isinstance(self._read, BaseException):
            raise self._read
        assert self._read is not None
        return self._read
