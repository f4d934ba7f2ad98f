"""The least a Redis layer with one copy per process can do: the floor of the fan-out workloads.

``FloorRedisLayer`` has just what the fan-out workloads call (new_channel, group_add,
group_send, receive, flush, close) and nothing a channel layer owes its users: no capacity, no
expiry, no flush of other processes, no reconnects, no name checks, members never leave. Each
process has one Redis list; group_add records the process in the group's set; group_send is one
script pushing one copy to each process's list; the process pops its list (one blocking pop at a
time) and hands each copy to its members: to a receive waiting, or kept for the next. The bench
runs it through the same workloads as the layers (``floor-redis``), so a fan-out target can be
read against what this machine allows in the same run.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from urllib.parse import urlsplit

import hiredis
import msgpack

_GROUP_SEND = b"for _, inbox in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('RPUSH', inbox, ARGV[1]) end"


class BareConnection(asyncio.Protocol):
    """One bare connection to Redis: commands written back to back, replies matched in order
    (``call`` gives the future of its reply). The floors of bench/floor.py use it too."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.pending: collections.deque[asyncio.Future] = collections.deque()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.pending.popleft()
            if not future.done():
                future.set_result(reply)

    def call(self, *args) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        self.transport.write(hiredis.pack_command(args))
        return future


async def connect(url: str) -> BareConnection:
    address = urlsplit(url)
    _transport, connection = await asyncio.get_running_loop().create_connection(
        BareConnection, address.hostname, address.port)
    return connection


class FloorRedisLayer:
    """See the module docstring: a floor to measure against, not a channel layer."""

    extensions = ["groups", "flush"]

    def __init__(self, hosts=None, capacity=None, **_ignored) -> None:
        self._url = hosts[0] if isinstance(hosts, list) else hosts
        self._prefix = f"floor:{secrets.token_hex(6)}"
        self._inbox = f"{self._prefix}:inbox"
        self._members: dict[str, list[str]] = {}  # group -> this process's members
        self._backlog: dict[str, collections.deque[bytes]] = collections.defaultdict(collections.deque)
        self._waiting: dict[str, asyncio.Future] = {}
        self._calls: BareConnection | None = None
        self._popper: asyncio.Task | None = None

    async def _ready(self) -> BareConnection:
        if self._calls is None:
            self._calls = await connect(self._url)
            self._sha = await self._calls.call("SCRIPT", "LOAD", _GROUP_SEND)
        return self._calls

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.floor!{secrets.token_hex(6)}"

    async def group_add(self, group: str, channel: str) -> None:
        calls = await self._ready()
        self._members.setdefault(group, []).append(channel)
        await calls.call("SADD", f"floor:g:{group}", self._inbox)
        if self._popper is None:
            self._popper = asyncio.ensure_future(self._pop_forever())

    async def group_send(self, group: str, message: dict) -> None:
        calls = await self._ready()
        await calls.call("EVALSHA", self._sha, 1, f"floor:g:{group}", b"%s\n%s" % (group.encode(), msgpack.packb(message)))

    async def _pop_forever(self) -> None:
        popper = await connect(self._url)
        while True:
            _inbox, payload = await popper.call("BLPOP", self._inbox, 0)
            group, _, body = payload.partition(b"\n")
            for channel in self._members.get(group.decode(), ()):
                waiter = self._waiting.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(body)
                else:
                    self._backlog[channel].append(body)

    async def receive(self, channel: str) -> dict:
        backlog = self._backlog.get(channel)
        if backlog:
            return msgpack.unpackb(backlog.popleft())
        waiter = self._waiting[channel] = asyncio.get_running_loop().create_future()
        return msgpack.unpackb(await waiter)

    async def flush(self) -> None:
        calls = await self._ready()
        for group in self._members:
            await calls.call("DEL", f"floor:g:{group}")
        await calls.call("DEL", self._inbox)

    async def close(self) -> None:
        if self._popper is not None:
            self._popper.cancel()
        if self._calls is not None:
            self._calls.transport.close()
