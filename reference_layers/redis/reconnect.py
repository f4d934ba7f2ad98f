"""Reaching a shard: connection attempts retried for at most ``reconnect_timeout``, then a clear error.

Why bounded: a receive waiting on a shard whose server is gone must not wait for ever (FAULT-1),
while a restart, which takes the server away for well under a second, must be ridden out without
an error (FAULT-2, FAULT-3). The clock starts at the first failed attempt and stops at the next
success, per shard and event loop: once a shard has been unreachable for the bound, each call
tries once more and fails at once, instead of every call waiting the whole bound again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

DEFAULT_RECONNECT_TIMEOUT = 5.0  # seconds: rides out a restart, fails well within a caller's patience
TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 0.5


class ShardUnreachable(RedisConnectionError, ConnectionError):
    """No connection to a Redis shard could be opened for ``reconnect_timeout`` seconds.

    A ``redis.exceptions.ConnectionError`` (what callers caught before) and a builtin
    ``ConnectionError`` (what code that knows no redis-py catches)."""


class Reconnector:
    """Opens one shard's connections, retrying refused or failed attempts within the bound."""

    def __init__(self, address: str, timeout: float):
        self.address = address
        self.timeout = timeout
        self._failing_since: float | None = None  # loop time of the first failure since the last success

    async def open(self, opener: Callable[[], Awaitable[T]]) -> T:
        """``await opener()``, again after each transient failure; ShardUnreachable past the bound."""
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_FIRST
        while True:
            started = loop.time()
            try:
                opened = await opener()
            except TRANSIENT_ERRORS as exc:
                if self._failing_since is None:
                    self._failing_since = started
                unreachable_for = loop.time() - self._failing_since
                if unreachable_for >= self.timeout:
                    raise ShardUnreachable(
                        f"cannot reach Redis at {self.address}: no connection for {unreachable_for:.1f} s "
                        f"(reconnect_timeout={self.timeout:g}); last error: {exc}") from exc
                await asyncio.sleep(min(delay, self.timeout - unreachable_for))
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            self._failing_since = None
            return opened
