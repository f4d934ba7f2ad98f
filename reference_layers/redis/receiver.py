"""Receiving: one task per capacity key and event loop takes messages for all of its waiters.

A process's channels ``p!a``, ``p!b``, ... share one capacity key ``p!``, so one loop serves
them all, popping from exactly the channels someone waits on, as many messages as there are
receivers waiting (a flood on ``p!a`` never delays ``p!b``), and for those channels a few more
read ahead, still counted on the server so capacity stays exact (copies.py).

Before its first pop the loop subscribes to the key's bell (bells.py); when a pop leaves
receivers unserved, the loop sleeps until a ring with an id newer than the pop saw (a push
from anywhere), a push from this process (``poke``), a new receiver, or ``LOOK_AGAIN``
seconds, and pops again. Pops are never cancelled by a receiver; a message popped for a
receiver that was cancelled meanwhile goes to the next receiver of that channel here, or
back to the head of its Redis list. Group copies a pop drained for channels nobody waits on
yet, and messages read ahead, are held on the loop's shelf (shelf.py); waiters are served from
it before any pop, while the shard's flushes are heard (flushes.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

from redis.exceptions import ResponseError

from ..core.waiters import Waiters
from .cluster import ClusterShard
from .copies import PopReply
from .emptied import EmptiedQueues
from .pops import Pop
from .reconnect import TRANSIENT_ERRORS, ShardUnreachable
from .shard import ShardClient, is_noscript
from .shelf import CopyShelf

log = logging.getLogger(__name__)

_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 1.0
_PUSH_BACK_ATTEMPTS = 20
LOOK_AGAIN = 10.0  # seconds: a waiting loop pops this often even if no bell rang


class Receiver:
    def __init__(self, shard: ShardClient | ClusterShard, capacity_key: str, ttl_ms: int,
                 on_idle: Callable[["Receiver"], None], shelf: CopyShelf):
        self.shard = shard
        self._shelf = shelf
        self.capacity_key = capacity_key
        self._ttl_ms = ttl_ms
        self._on_idle = on_idle
        self._waiting = Waiters()
        self._waiters = self._waiting.first  # channel -> its oldest waiter: empty when nobody waits
        self._returns: deque[tuple[str, bytes]] = deque()  # popped, owed to no receiver yet
        self._dirty = False  # something may be there for a waiter: pop before sleeping
        self._closing = False
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Future | None = None  # the loop sleeps on it when nothing is to do
        self._bell = shard.keys.bell(capacity_key).encode()
        self._last_id = 0  # the bell's last id when the latest pop ran
        self._popping = False  # a pop is on its way: a ring now may be of a push it sees
        self._rung_meanwhile = 0  # the newest id rung while a pop was on its way
        self._subscribed = False  # a push to our key surely rings us (so a sleeping loop may trust its pops)
        self._early: Pop | None = None  # a pop a poke already sent
        self._emptied = EmptiedQueues(shard.read_ahead(capacity_key))  # waiters there need no pop
        self._flushes = shard.flushes_for(capacity_key)  # may what is held here be served (flushes.py)
        shard.bells.listen(self._bell, self._on_ring)

    # --- called by receive() -----------------------------------------------------------------
    def wait(self, channel: str) -> asyncio.Future:
        """A new waiter of ``channel``: the future gets its entry."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.add(channel, future)
        if channel not in self._emptied.channels:
            self._dirty = True
        elif self._wake is None and self._task is not None and not self._task.done():
            return future  # the loop is busy (popping, handing out): it looks at the waiters next anyway
        self._kick()
        return future

    def remove_waiter(self, channel: str, future: asyncio.Future) -> None:
        if future.done() and not future.cancelled():
            return  # handed its message (or failed with the rest): no longer waiting here
        if channel in self._waiters:
            self._waiting.remove(channel, future)
            if not self._waiters:
                self._kick()  # nobody waits: let the loop end

    def _on_ring(self, message_id: int) -> None:
        """A push rang the bell (or, with -1, the bell connection was lost): look again."""
        if message_id < 0:
            self._subscribed = False
        elif self._popping:  # whether the pop saw this push, its reply tells (its last id): no pop yet
            if message_id > self._rung_meanwhile:
                self._rung_meanwhile = message_id
                self._emptied.rung(message_id)
            return
        if message_id < 0 or message_id > self._last_id:
            self._emptied.heard(message_id)
            if self._waiters:
                self.poke()

    def poke(self) -> None:
        """A push for our key was rung, or written by this process: pop again.

        A loop asleep gets its pop sent right here, in this turn of the event loop: behind a
        push of this process on the same connection (so it finds the message; no bell needed),
        and without waiting for the loop's task to be scheduled first.
        """
        self._emptied.heard()
        if not self._waiters:
            return
        self._dirty = True
        if self._wake is not None and not self._wake.done():
            if self._early is None and self._subscribed and not self._closing:
                wanted = self._waiting.wanted()
                if wanted:
                    queued = self.shard.pop_now(self.capacity_key, wanted)
                    if queued is not None:
                        self._emptied.popping()
                        self._early = Pop(queued[0], wanted, self.capacity_key, self._shelf, self._flushes)
                        self._popping = True
            self._wake.set_result(None)

    def look_at_shelf(self) -> None:
        """Copies were shelved by a pop of another task: serve the waiters they are for."""
        if self._waiters:
            self._kick()

    def wanted_now(self) -> dict[str, int] | None:
        """What the waiters want, if a delivery's copies may be handed to them now (deliveries.py):
        the loop sleeps, so every message its pops took is handed out and none is on its way (one
        would be older). None if not."""
        wake = self._wake
        if wake is None or wake.done() or self._early is not None or self._returns:
            return None
        return self._waiting.wanted()

    def hand_delivered(self, messages: list[tuple[str, bytes]]) -> None:
        """Hand a delivery's copies for the waiters ``wanted_now`` named."""
        for channel, entry in messages:
            if not self._waiting.hand(channel, entry):  # a receiver gone meanwhile: the next one, or Redis
                self._returns.append((channel, entry))
                self._kick()

    def give_back(self, channel: str, entry: bytes) -> None:
        """A receive was cancelled holding ``entry``: the next receiver gets it, or Redis does."""
        if not self._waiting.hand(channel, entry):
            self._returns.append((channel, entry))
            self._kick()

    async def stop(self) -> None:
        """End the loop after any pop in flight, returning what nobody took to Redis."""
        self._closing = True
        self._kick()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def fail_waiters(self, error: BaseException) -> None:
        self._waiting.fail(error)

    # --- the loop -----------------------------------------------------------------------------
    def _kick(self) -> None:
        """Make the loop look again: start it, or wake it from its sleep."""
        task = self._task
        if task is None or task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"receive {self.capacity_key}")
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _popped(self, pop: Pop) -> PopReply:
        """The pop's reply. If this task is cancelled meanwhile (its event loop shutting down),
        what the pop took still goes back to Redis before the cancellation goes on."""
        try:
            return await pop.ready
        except asyncio.CancelledError:
            try:
                reply = await pop.collect()
            except Exception:  # noqa: BLE001 - no reply: the pop took nothing we could lose
                raise asyncio.CancelledError from None
            self._returns.extend(reply.messages)
            await self._return_undelivered()
            raise

    def _serve_held(self) -> None:
        """Hand waiters the copies held for their channels, oldest first."""
        shelf = self._shelf
        if not shelf or not self._waiters:
            return
        if not self._flushes.current:  # a flush may have been missed: the loop listens first
            self._dirty = True
            return
        now = asyncio.get_running_loop().time()
        for channel in [channel for channel in self._waiters if shelf.holds(channel)]:
            while channel in self._waiters:
                copy = shelf.take(channel, now)
                if copy is None:
                    break
                if not self._waiting.hand(channel, copy.entry):
                    shelf.restore(copy)
                    break

    async def _sleep(self, timeout: float | None = None) -> bool:
        """Wait until kicked or poked (or ``timeout`` passes: True)."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(timeout, _settle, wake, True) if timeout is not None else None
        try:
            return bool(await wake)
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        try:
            while True:
                self._serve_held()
                if self._returns:
                    await self._return_undelivered()
                    continue
                if self._closing:
                    break
                if not self._waiters:
                    await asyncio.sleep(0)  # a receiver just served often asks again at once
                    if self._waiters or self._returns:
                        continue
                    break  # no await between this check and leaving: no waiter is missed
                if not self._dirty:
                    if await self._sleep(LOOK_AGAIN):
                        self._dirty = True  # time to look anyway (rings, pokes, new receivers set it)
                        self._emptied.forget()
                    continue
                self._dirty = False
                try:
                    pending, self._early = self._early, None
                    if pending is None:
                        if not self._flushes.current:  # before the pop: what it holds is served at once
                            await asyncio.gather(  # (flushes.py; once per loop, unless it was away)
                                self._flushes.listen(), self.shard.bells.subscribe(self._bell))
                        else:
                            await self.shard.bells.subscribe(self._bell)  # at once, once subscribed
                        self._subscribed = True
                        wanted = self._waiting.wanted()  # after any wait: a receiver may have left meanwhile
                        if not wanted:
                            continue
                        self._emptied.popping()
                        self._popping = True
                        raw, _ = await self.shard.start_pop(self.capacity_key, wanted)
                        pending = Pop(raw, wanted, self.capacity_key, self._shelf, self._flushes)
                    reply = await self._popped(pending)
                    self._emptied.popped(pending.wanted, reply)
                except ResponseError as exc:
                    if not is_noscript(exc):
                        raise
                    await self.shard.load_scripts()  # gone after a SCRIPT FLUSH: pop again
                    self._dirty = True
                    continue
                except ShardUnreachable:
                    raise  # for reconnect_timeout: the receivers get the error (below)
                except TRANSIENT_ERRORS:
                    log.debug("pop from %s failed; retrying", self.capacity_key, exc_info=True)
                    self._dirty = True
                    await self._sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX)
                    continue
                finally:
                    self._popping, rung, self._rung_meanwhile = False, self._rung_meanwhile, 0
                delay = _BACKOFF_FIRST
                if rung > reply.last_id:
                    self._dirty = True  # rung while the pop was on its way, of a push after it
                self._last_id = max(self._last_id, reply.last_id)
                hand = self._waiting.hand
                for channel, entry in reply.messages:
                    if not hand(channel, entry):
                        self._returns.append((channel, entry))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a server refusing the script: tell the receivers
            log.warning("receiving from %s failed: %r", self.capacity_key, exc)
            self.fail_waiters(exc)
        finally:
            if not self._waiters and not self._returns:
                self.shard.bells.forget(self._bell, self._on_ring)
                self._on_idle(self)

    async def _return_undelivered(self) -> None:
        """Hand popped messages to receivers that came meanwhile; put the rest back at the head."""
        by_channel: dict[str, list[bytes]] = {}
        while self._returns:
            channel, entry = self._returns.popleft()
            if by_channel.get(channel) or not self._waiting.hand(channel, entry):
                by_channel.setdefault(channel, []).append(entry)
        for channel, entries in by_channel.items():
            held = self._shelf.take_all(channel)
            if held:  # copies held for the channel may be younger: all go back, in id order
                entries = sorted([*entries, *(copy.entry for copy in held)], key=_message_id)
            for attempt in range(_PUSH_BACK_ATTEMPTS):
                try:
                    await self.shard.push_back(self.capacity_key, channel, entries, self._ttl_ms)
                    break
                except TRANSIENT_ERRORS:
                    await asyncio.sleep(min(_BACKOFF_FIRST * 2 ** attempt, _BACKOFF_MAX))
            else:
                log.warning("lost %d message(s) of %s: the server stayed unreachable", len(entries), channel)


def _message_id(entry: bytes) -> int:
    return int(entry.split(b":", 2)[1])


def _settle(future: asyncio.Future, timed_out: bool = False) -> None:
    if not future.done():
        future.set_result(timed_out)
