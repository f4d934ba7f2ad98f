"""Flush epochs: a loop serves what it holds (copies.py) only if no flush came after the pop that took it.

A loop holds group copies and messages read ahead, taken from the server by a pop; a flush in
another process cannot delete them there (XP-4). So each flush ends by setting the shard's flush
epoch (``P:e``) to a greater number and PUBLISHing it on the channel of that name (scripts.FLUSHED);
every pop returns the epoch it ran in, and the copies it leaves held carry it. A loop holding
copies listens on that channel; hearing a greater epoch, it drops every copy popped before
(``on_flush``). Replies and rings travel on two connections, so a pop's reply may come after the
ring of a flush that ran after the pop: ``admits`` then refuses what that pop left held.

A flush returns once every loop that heard its ring has answered (on ``P:e:acks``) that it dropped
what it held from before, or after ``ACK_TIMEOUT``: so a receive that begins after a flush returned,
in any process, gets nothing sent before it. A loop that could not answer was not running (stopped
between ``run_until_complete`` calls, or blocked): the ring may lie unread in its socket when it
serves again. So a listening loop keeps a heartbeat (core/heartbeat.py); with no beat for
``AWAY`` (well under ``ACK_TIMEOUT``), it reads the epoch before serving anything held.

While the subscription is not confirmed (first use, or its connection lost, when a ring may have
been missed), nothing held is served: ``listen()`` subscribes, then reads the epoch. The epoch
unchanged, the copies stay (a dropped connection loses nothing); changed or missing (a flush under
way, or a restart that lost the server's state and the copies' count with it), they are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..core.heartbeat import ACK_TIMEOUT, AWAY, Heartbeat
from .bells import Listener
from .reconnect import TRANSIENT_ERRORS, ShardUnreachable

log = logging.getLogger(__name__)
_LISTEN_ATTEMPTS, _LISTEN_PAUSE = 5, 0.05  # a connection dropped while subscribing: try again


class BellBoard(Protocol):
    """Where a watch hears its channel: one server's bells (bells.Bells) or a cluster's."""

    def listen(self, bell: bytes, listener: Listener) -> None: ...

    def forget(self, bell: bytes, listener: Listener) -> None: ...

    async def subscribe(self, bell: bytes) -> None: ...

    async def unsubscribe(self, bell: bytes) -> None: ...


class FlushWatch:
    """One shard's flush epoch as this event loop knows it (in a cluster: one process key's)."""

    def __init__(self, bells: BellBoard, channel: str, read_epoch: Callable[[], Awaitable[bytes | None]],
                 answer: Callable[[bytes, int], None]):
        self.epoch = 0  # the latest heard of; copies of older pops are gone
        self.listening = False  # subscribed, and no ring missed since: ``epoch`` is current
        self.on_flush: Callable[[int], None] = lambda epoch: None  # drop what is held of another epoch
        self._bells = bells
        self._channel = channel.encode()
        self._acks = self._channel + b":acks"
        self._read_epoch = read_epoch
        self._answer = answer  # publish (channel, epoch) without waiting
        self._losses = 0  # subscriptions lost so far
        self._awaited: dict[int, tuple[int, asyncio.Future]] = {}  # epoch -> (answers missing, all in)
        self._early: dict[int, int] = {}  # epoch -> answers heard before its flush's script replied
        self.announcing = 0  # announce() calls under way (answers are kept for them, see _acked)
        self._heartbeat = Heartbeat(clock=_loop_time)  # while listening
        self._listening: asyncio.Future | None = None  # the one listen() under way, for every caller
        bells.listen(self._channel, self._heard)
        bells.listen(self._acks, self._acked)

    @property
    def current(self) -> bool:
        """``epoch`` is the shard's now: listening, and the loop has run lately (so it read the ring
        of any flush that returned, which waited for its answer first)."""
        return self.current_at(asyncio.get_running_loop().time())

    def current_at(self, now: float) -> bool:
        """``current``, at the loop's time ``now`` (which the caller has at hand)."""
        return self.listening and now - self._heartbeat.marked_at < AWAY

    def close(self) -> None:
        self._heartbeat.stop()

    async def stop(self) -> None:
        """Hear this epoch no more (a watch a flush made for another process's key): listeners
        forgotten, subscriptions dropped."""
        self.close()
        self._bells.forget(self._channel, self._heard)
        self._bells.forget(self._acks, self._acked)
        await asyncio.gather(self._bells.unsubscribe(self._acks), self._bells.unsubscribe(self._channel))

    def admits(self, epoch: int) -> bool:
        """A pop ran in ``epoch``: may what it left held be kept?"""
        if epoch > self.epoch:
            self._move_to(epoch)
        return epoch == self.epoch

    async def listen(self) -> None:
        """Subscribe, then learn the epoch (copies of another one are dropped). A connection lost
        meanwhile is tried again a few times (ShardUnreachable at once). Receives that ask at the
        same time share one attempt (a fan-out's members would each make one)."""
        if self._listening is None or self._listening.done():
            self._listening = asyncio.ensure_future(self._listen())
            self._listening.add_done_callback(_seen)
        await asyncio.shield(self._listening)

    async def _listen(self) -> None:
        for attempt in range(_LISTEN_ATTEMPTS):
            losses = self._losses
            try:
                await self._bells.subscribe(self._channel)
                current = await self._read_epoch()
            except ShardUnreachable:
                raise
            except TRANSIENT_ERRORS:
                if attempt == _LISTEN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(_LISTEN_PAUSE)
                continue
            self._move_to(int(current) if current is not None else 0)
            self.listening = self._losses == losses
            if self.listening:
                self._heartbeat.start()
                return

    async def announce(self, flushed: Callable[[], Awaitable[list]]) -> None:
        """Run scripts.FLUSHED (``flushed``), then wait for the answers of the loops that heard it.
        An answer may come before the script's reply is read (the ring and the answers travel on
        the subscription's connection, the reply on another, behind whatever was queued there):
        it is kept and counted."""
        self.announcing += 1
        try:
            await self._bells.subscribe(self._acks)
            epoch, heard = await flushed()
            epoch, heard = int(epoch), int(heard)
            self.admits(epoch)
            missing = heard - self._early.pop(epoch, 0)
            if missing <= 0:
                return
            all_in = asyncio.get_running_loop().create_future()
            self._awaited[epoch] = (missing, all_in)
            try:
                await asyncio.wait_for(asyncio.shield(all_in), ACK_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("flush: %d of %d event loops listening did not answer within %g s",
                            self._awaited[epoch][0], heard, ACK_TIMEOUT)
            finally:
                del self._awaited[epoch]
        finally:
            self.announcing -= 1
            if not self.announcing:
                self._early.clear()

    def _heard(self, epoch: int) -> None:
        if epoch < 0:  # the subscription went with its connection
            self._losses += 1
            self.listening = False
            self.close()
            return
        if epoch > self.epoch:
            self._move_to(epoch)
        self._answer(self._acks, epoch)  # what was held from before is dropped

    def _acked(self, epoch: int) -> None:
        awaited = self._awaited.get(epoch)
        if awaited is None:
            if self.announcing:  # maybe for a flush whose script's reply is still on its way
                self._early[epoch] = self._early.get(epoch, 0) + 1
            return
        missing, all_in = awaited
        self._awaited[epoch] = (missing - 1, all_in)
        if missing <= 1 and not all_in.done():
            all_in.set_result(None)

    def _move_to(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.on_flush(epoch)


def _loop_time() -> float:
    """The clock the heartbeat is compared with: the loop's, which the receives read (layer.py)."""
    return asyncio.get_running_loop().time()


def _seen(attempt: asyncio.Future) -> None:
    """Its callers hear of its error; none may be left to (all cancelled): no warning then."""
    if not attempt.cancelled():
        attempt.exception()


class Unwatched:
    """Nothing of it is held in any process (a normal channel of a Redis Cluster): nothing to watch."""

    epoch = 0
    listening = current = True

    @staticmethod
    def admits(epoch: int) -> bool:
        return True

    @staticmethod
    def current_at(now: float) -> bool:
        return True

    async def listen(self) -> None:
        pass

    def close(self) -> None:
        pass
