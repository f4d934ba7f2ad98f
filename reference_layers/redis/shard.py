"""One shard's connections on one event loop, and the layer's operations as single scripts.

redis-py connections belong to the event loop that opened them, so the layer keeps one
ShardClient per (loop, shard). Blocking waits get their own pool, with a socket timeout
longer than the wait itself, so an idle receive is never killed by a socket timeout while a
silently dead connection is still noticed.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import scripts
from .hosts import ShardAddress
from .keys import KeySpace

BELL_WAIT_MS = 10_000  # a blocking wait returns after this long, and the receiver looks again
_BLOCKING_SOCKET_TIMEOUT = BELL_WAIT_MS / 1000 + 10
_SCAN_BATCH = 500


class ShardClient:
    def __init__(self, address: ShardAddress, keys: KeySpace):
        self.address = address
        self.keys = keys
        # No automatic retries: a send whose reply was lost must not be sent twice. A pooled
        # connection that died with its server is replaced when it is next taken.
        options = {**address.options, "retry": Retry(NoBackoff(), 0)}
        self.commands = Redis(connection_pool=ConnectionPool(**options))
        self.blocking = Redis(connection_pool=ConnectionPool(
            **{**options, "socket_timeout": _BLOCKING_SOCKET_TIMEOUT}))
        self._send = self.commands.register_script(scripts.SEND)
        self._pop = self.commands.register_script(scripts.POP)
        self._push_back = self.commands.register_script(scripts.PUSH_BACK)
        self._ring = self.commands.register_script(scripts.RING)
        self._group_add = self.commands.register_script(scripts.GROUP_ADD)
        self._group_discard = self.commands.register_script(scripts.GROUP_DISCARD)
        self._group_send = self.commands.register_script(scripts.GROUP_SEND)

    # --- channels --------------------------------------------------------------------------
    async def send(self, channel: str, body: bytes, expiry_ms: int, capacity: int) -> bool:
        """Queue ``body``; False if the channel's capacity key is full."""
        key = self.keys.capacity_key(channel)
        queued = await self._send(keys=[self.keys.queue(channel), self.keys.count(key), self.keys.bell(key)],
                                  args=[expiry_ms, capacity, body])
        return bool(queued)

    async def pop(self, capacity_key: str, wanted: dict[str, int]) -> tuple[bytes, list[tuple[str, bytes]]]:
        """Up to ``wanted[channel]`` unexpired messages of each channel, and the bell's last id."""
        channels = list(wanted)
        reply = await self._pop(
            keys=[self.keys.count(capacity_key), self.keys.bell(capacity_key),
                  *(self.keys.queue(channel) for channel in channels)],
            args=[wanted[channel] for channel in channels])
        entries = [(channels[reply[i] - 1], reply[i + 1]) for i in range(2, len(reply), 2)]
        return reply[1], entries

    async def push_back(self, capacity_key: str, channel: str, entries: list[bytes], ttl_ms: int) -> None:
        await self._push_back(keys=[self.keys.count(capacity_key), self.keys.bell(capacity_key),
                                    self.keys.queue(channel)], args=[ttl_ms, *entries])

    async def ring(self, capacity_key: str, ttl_ms: int) -> None:
        await self._ring(keys=[self.keys.bell(capacity_key)], args=[ttl_ms])

    async def wait_for_bell(self, capacity_key: str, last_id: bytes) -> None:
        """Block until the bell rings after ``last_id`` (or BELL_WAIT_MS pass). Consumes nothing."""
        await self.blocking.xread({self.keys.bell(capacity_key): last_id}, count=1, block=BELL_WAIT_MS)

    # --- groups -----------------------------------------------------------------------------
    async def group_add(self, group: str, channel: str, group_expiry_ms: int, capacity: int) -> None:
        await self._group_add(keys=[self.keys.group_members(group), self.keys.group_capacities(group)],
                              args=[channel, group_expiry_ms, capacity])

    async def group_discard(self, group: str, channel: str) -> None:
        await self._group_discard(keys=[self.keys.group_members(group), self.keys.group_capacities(group)],
                                  args=[channel])

    async def group_send(self, group: str, body: bytes, expiry_ms: int, capacity: int) -> int:
        return await self._group_send(
            keys=[self.keys.group_members(group), self.keys.group_capacities(group)],
            args=[self.keys.prefix, expiry_ms, capacity, body])

    # --- whole shard ------------------------------------------------------------------------
    async def flush(self) -> None:
        """Delete this prefix's messages and groups, and nothing else.

        Bells stay (they hold no message): a receiver blocked on one waits for an id newer
        than the last it saw, and a bell made anew could start below it within the same ms.
        """
        batch = []
        bells = self.keys.bell("").encode()
        async for key in self.commands.scan_iter(match=self.keys.pattern, count=_SCAN_BATCH):
            if key.startswith(bells):
                continue
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                await self.commands.unlink(*batch)
                batch.clear()
        if batch:
            await self.commands.unlink(*batch)

    async def aclose(self) -> None:
        for client in (self.commands, self.blocking):
            await client.connection_pool.disconnect()
