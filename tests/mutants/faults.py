"""FAULT-*: layers that handle bad weather wrong, each in one plausible way.

They need a real server, so tests/test_fault_area.py runs them (tests/test_mutants.py exempts
the FAULT ids). Their base, :class:`PlainRedisLayer`, is a small layer straight over redis-py
that does the right things: its calls fail naming the address when the server was never
reached, retry once over a fresh connection when a pooled one died, keep a receive waiting
through a restart, and add its group memberships again after a reconnection. Each mutant
undoes one of those; the base itself passes the FAULT area.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel as BlockingSentinel

KEYS = "asgi-plain:"
LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError, OSError)
WAIT_SLICE = 1  # seconds a BLPOP waits server-side before the receive loop asks again
RECONNECT_PAUSE = 0.1


class PlainRedisLayer:
    """Channels as Redis lists, groups as sets, on the first of ``hosts``; no capacity, no expiry."""

    extensions = ["groups", "flush"]
    conformance_unsupported = {
        "capacity": "a plain test layer over redis-py: no capacities",
        "expiry": "a plain test layer over redis-py: messages never expire",
        "group-expiry": "a plain test layer over redis-py: memberships never expire",
    }

    def __init__(self, hosts: list[Any] | str | None = None, **ignored: Any):
        host = (hosts if isinstance(hosts, str) else (hosts or ["redis://127.0.0.1:6379"])[0])
        if isinstance(host, dict):  # a Sentinel set: connections ask the sentinels for the master
            self.url = f"sentinel:{host['master_name']}"
            self.client = self.sentinel_client(host)
        else:
            self.url = host
            self.client = aioredis.Redis.from_url(host, retry=Retry(NoBackoff(), 0),
                                                  connection_class=_noticing_connections(self))
        self.connected_once = False
        self.lost_connection = False
        self.memberships: dict[str, set[str]] = defaultdict(set)

    def sentinel_client(self, entry: dict) -> aioredis.Redis:
        """redis-py's Sentinel client: every new connection asks for the master, and a READONLY
        reply (the master demoted) drops the connection."""
        sentinels = Sentinel([tuple(pair) for pair in entry["sentinels"]], sentinel_kwargs=entry.get("sentinel_kwargs"))
        return sentinels.master_for(entry["master_name"], retry=Retry(NoBackoff(), 0))

    # --- the one way every command goes ---------------------------------------------------
    async def call(self, command: str, *args: Any) -> Any:
        """Run a command; over a dead pooled connection, once more over a fresh one."""
        try:
            reply = await self.client.execute_command(command, *args)
        except LOST_CONNECTION as first:
            self.lost_connection = True
            if not self.connected_once or _being_cancelled():
                raise
            try:
                reply = await self.client.execute_command(command, *args)
            except LOST_CONNECTION as second:
                raise second from first
        await self.reached()
        return reply

    async def reached(self) -> None:
        """A command got its reply: after a lost connection, the server may have restarted."""
        self.connected_once = True
        if self.lost_connection:
            self.lost_connection = False
            await self.rejoin_groups()

    async def rejoin_groups(self) -> None:
        """The server may have lost its state: add every membership this layer made again."""
        for group, channels in list(self.memberships.items()):
            if channels:
                await self.client.execute_command("SADD", KEYS + "group:" + group, *channels)

    # --- the API ---------------------------------------------------------------------------
    async def send(self, channel: str, message: dict) -> None:
        await self.call("RPUSH", KEYS + channel, json.dumps(message))

    async def receive(self, channel: str) -> dict:
        while True:
            if _being_cancelled():  # a cancel redis-py turned into an error must still end the wait
                raise asyncio.CancelledError
            try:
                reply = await self.call("BLPOP", KEYS + channel, WAIT_SLICE)
            except LOST_CONNECTION:
                if not self.connected_once or _being_cancelled():
                    raise
                reply = await self.wait_through_lost_connection()
            if reply is not None:
                return self.decode(reply)

    async def wait_through_lost_connection(self) -> Any:
        """The server went away mid-wait: wait a moment, then the loop asks again."""
        await asyncio.sleep(RECONNECT_PAUSE)
        return None

    def decode(self, reply: Any) -> dict:
        message: dict = json.loads(reply[1])
        return message

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.{secrets.token_hex(6)}!{secrets.token_hex(6)}"

    async def group_add(self, group: str, channel: str) -> None:
        self.memberships[group].add(channel)
        await self.call("SADD", KEYS + "group:" + group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.memberships[group].discard(channel)
        await self.call("SREM", KEYS + "group:" + group, channel)

    async def group_send(self, group: str, message: dict) -> None:
        for member in await self.call("SMEMBERS", KEYS + "group:" + group):
            await self.send(member.decode(), message)

    async def flush(self) -> None:
        keys = [key async for key in self.client.scan_iter(match=KEYS + "*")]
        if keys:
            await self.client.delete(*keys)

    async def close(self) -> None:
        await self.client.aclose()


def _being_cancelled() -> bool:
    """redis-py may turn the cancellation of a waiting command into a connection error: a
    receive that took it for a lost connection would wait on, deaf to every later cancel."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _noticing_connections(layer: PlainRedisLayer) -> type[aioredis.Connection]:
    """Connections that tell the layer when one is made after it had reached the server:
    redis-py reconnects a dead pooled connection by itself, so a restart may raise nothing."""

    class Noticing(aioredis.Connection):
        async def on_connect_check_health(self, check_health: bool = True) -> None:
            await super().on_connect_check_health(check_health=check_health)
            if layer.connected_once:
                layer.lost_connection = True

    return Noticing


class HidesTheAddress(PlainRedisLayer):
    """FAULT-1: with no server, every call fails with an error that says nothing of where."""

    async def call(self, command: str, *args: Any) -> Any:
        try:
            return await super().call(command, *args)
        except LOST_CONNECTION:
            raise RuntimeError("the channel layer is unavailable") from None


class GivesUpAfterALostConnection(PlainRedisLayer):
    """FAULT-2: once a connection was lost, every later call fails until the process restarts."""

    gave_up = False

    async def call(self, command: str, *args: Any) -> Any:
        if self.gave_up:
            raise RuntimeError("the connection to Redis was lost earlier: restart the process")
        try:
            reply = await self.client.execute_command(command, *args)
        except LOST_CONNECTION:
            self.gave_up = self.connected_once
            raise
        if self.lost_connection:  # redis-py replaced a dead connection without a word
            self.gave_up = True
            raise RuntimeError("the connection to Redis was lost: restart the process")
        self.connected_once = True
        return reply


class WaitsOnADeadConnection(PlainRedisLayer):
    """FAULT-3: a receive whose connection dies mid-wait keeps waiting on it, for ever."""

    async def wait_through_lost_connection(self) -> Any:
        return await asyncio.get_running_loop().create_future()  # the read that never completes


SLOW_SEND = 1.0  # seconds after which RetriesSlowSends gives up on a send and sends again


class RetriesSlowSends(PlainRedisLayer):
    """FAULT-4: a send with no reply within a second is sent again over a fresh connection;
    the first one is still queued at the paused server, which runs both when it resumes."""

    async def send(self, channel: str, message: dict) -> None:
        data = json.dumps(message)
        try:
            await asyncio.wait_for(self.client.execute_command("RPUSH", KEYS + channel, data), SLOW_SEND)
        except asyncio.TimeoutError:
            await self.call("RPUSH", KEYS + channel, data)


class RedeliversAfterADrop(PlainRedisLayer):
    """FAULT-5: a receive that loses its connection returns the message it returned last again,
    as if it had not been acknowledged."""

    last: dict | None = None

    async def call(self, command: str, *args: Any) -> Any:
        try:
            reply = await self.client.execute_command(command, *args)
        except LOST_CONNECTION:
            if command != "BLPOP" or self.last is None:
                return await super().call(command, *args)
            self.lost_connection = True
            return [b"", json.dumps(self.last)]
        await self.reached()
        return reply

    def decode(self, reply: Any) -> dict:
        self.last = super().decode(reply)
        return self.last


class ForgetsMemberships(PlainRedisLayer):
    """FAULT-6: after a reconnection the memberships the restarted server lost stay lost."""

    async def rejoin_groups(self) -> None:
        pass


class DefersFailedSends(PlainRedisLayer):
    """FAULT-8: a send that fails is kept and returns; it goes out after the next send that works,
    so a sender's messages arrive out of order."""

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.deferred: list[tuple[str, str]] = []

    async def send(self, channel: str, message: dict) -> None:
        try:
            await super().send(channel, message)
        except LOST_CONNECTION:
            if not self.connected_once:
                raise
            self.deferred.append((channel, json.dumps(message)))
            return
        while self.deferred:
            deferred_channel, data = self.deferred.pop(0)
            await self.call("RPUSH", KEYS + deferred_channel, data)


class ResolvesTheMasterOnce(PlainRedisLayer):
    """FAULT-7: asks the sentinels for the master once, when built, and keeps to that address:
    after a failover it talks to a dead port, then to the old master restarted as a replica."""

    def sentinel_client(self, entry: dict) -> aioredis.Redis:
        sentinels = BlockingSentinel([tuple(pair) for pair in entry["sentinels"]],
                                     sentinel_kwargs=entry.get("sentinel_kwargs"))
        host, port = sentinels.discover_master(entry["master_name"])
        return aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0))
