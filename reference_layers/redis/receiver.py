"""Receiving: one task per capacity key and event loop takes messages for all of its waiters.

A process's channels ``p!a``, ``p!b``, ... share one capacity key ``p!``, so one loop serves
them all, popping from exactly the channels someone waits on (a flood on ``p!a`` never
delays ``p!b``, and nothing is taken from Redis before a receiver wants it, so capacity
stays exact). Between pops it blocks on the key's bell stream, which consumes nothing:
cancelling that wait is always safe. Pops themselves are never cancelled by a receiver;
a message popped for a receiver that was cancelled meanwhile goes to the next receiver of
that channel here, or back to the head of its Redis list.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .shard import ShardClient

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 1.0
_PUSH_BACK_ATTEMPTS = 20


class Receiver:
    def __init__(self, shard: ShardClient, capacity_key: str, ttl_ms: int,
                 on_idle: Callable[["Receiver"], None]):
        self.shard = shard
        self.capacity_key = capacity_key
        self._ttl_ms = ttl_ms
        self._on_idle = on_idle
        self._waiters: dict[str, deque[asyncio.Future]] = {}
        self._returns: deque[tuple[str, bytes]] = deque()  # popped, owed to no receiver yet
        self._dirty = False  # a waiter came since the last pop: pop again before blocking
        self._closing = False
        self._task: asyncio.Task | None = None
        self._wait: asyncio.Future | None = None  # the cancel-safe blocking step, if in one

    # --- called by receive() -----------------------------------------------------------------
    def add_waiter(self, channel: str, future: asyncio.Future) -> bool:
        """List a waiting receive; True if the loop is blocked and must be woken (ring the bell)."""
        self._waiters.setdefault(channel, deque()).append(future)
        self._dirty = True
        self._ensure_running()
        return self._wait is not None

    def remove_waiter(self, channel: str, future: asyncio.Future) -> None:
        waiters = self._waiters.get(channel)
        if waiters is not None:
            try:
                waiters.remove(future)
            except ValueError:
                pass
            if not waiters:
                del self._waiters[channel]
        if not self._pending() and not self._returns:
            self._interrupt()  # nobody waits: let the loop end now instead of after its wait

    def give_back(self, channel: str, entry: bytes) -> None:
        """A receive was cancelled holding ``entry``: the next receiver gets it, or Redis does."""
        if not self._hand(channel, entry):
            self._returns.append((channel, entry))
            self._ensure_running()
            self._interrupt()

    async def ring(self) -> None:
        """Wake this key's blocked loop (every process's, harmlessly) through the server."""
        try:
            await self.shard.ring(self.capacity_key, self._ttl_ms)
        except TRANSIENT_ERRORS:  # the loop's own wait fails too, and it then looks again
            log.debug("ring of %s failed", self.capacity_key, exc_info=True)

    async def stop(self) -> None:
        """End the loop after any pop in flight, returning what nobody took to Redis."""
        self._closing = True
        self._interrupt()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def fail_waiters(self, error: BaseException) -> None:
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(error)
        self._waiters.clear()

    # --- the loop -----------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"receive {self.capacity_key}")

    def _pending(self) -> dict[str, int]:
        counts = {}
        for channel, waiters in self._waiters.items():
            live = sum(1 for future in waiters if not future.done())
            if live:
                counts[channel] = live
        return counts

    def _hand(self, channel: str, entry: bytes) -> bool:
        waiters = self._waiters.get(channel)
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(entry)
                return True
        return False

    def _interrupt(self) -> None:
        if self._wait is not None and not self._wait.done():
            self._wait.cancel()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        try:
            while True:
                if self._returns:
                    await self._return_undelivered()
                wanted = self._pending()
                if self._closing or not wanted:
                    if not self._returns:
                        break  # no await between this check and leaving: no waiter is missed
                    continue
                self._dirty = False
                try:
                    bell_id, entries = await self.shard.pop(self.capacity_key, wanted)
                except TRANSIENT_ERRORS:
                    log.debug("pop from %s failed; retrying", self.capacity_key, exc_info=True)
                    await self._cancel_safe(asyncio.sleep(delay))
                    delay = min(delay * 2, _BACKOFF_MAX)
                    continue
                delay = _BACKOFF_FIRST
                for channel, entry in entries:
                    if not self._hand(channel, entry):
                        self._returns.append((channel, entry))
                if entries or self._dirty or self._returns or self._closing:
                    continue
                try:
                    await self._cancel_safe(self.shard.wait_for_bell(self.capacity_key, bell_id))
                except TRANSIENT_ERRORS:
                    log.debug("wait on %s failed; retrying", self.capacity_key, exc_info=True)
                    await self._cancel_safe(asyncio.sleep(delay))
                    delay = min(delay * 2, _BACKOFF_MAX)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a server refusing the script: tell the receivers
            log.warning("receiving from %s failed: %r", self.capacity_key, exc)
            self.fail_waiters(exc)
        finally:
            if not self._pending() and not self._returns:
                self._on_idle(self)

    async def _cancel_safe(self, awaitable) -> None:
        """Await a step that loses nothing if cancelled; an interrupt just ends it early."""
        self._wait = asyncio.ensure_future(awaitable)
        try:
            await self._wait
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # the loop itself is being cancelled
        finally:
            self._wait = None

    async def _return_undelivered(self) -> None:
        """Hand popped messages to receivers that came meanwhile; put the rest back at the head."""
        by_channel: dict[str, list[bytes]] = {}
        while self._returns:
            channel, entry = self._returns.popleft()
            if by_channel.get(channel) or not self._hand(channel, entry):
                by_channel.setdefault(channel, []).append(entry)
        for channel, entries in by_channel.items():
            for attempt in range(_PUSH_BACK_ATTEMPTS):
                try:
                    await self.shard.push_back(self.capacity_key, channel, entries, self._ttl_ms)
                    break
                except TRANSIENT_ERRORS:
                    await asyncio.sleep(min(_BACKOFF_FIRST * 2 ** attempt, _BACKOFF_MAX))
            else:
                log.warning("lost %d message(s) of %s: the server stayed unreachable", len(entries), channel)
