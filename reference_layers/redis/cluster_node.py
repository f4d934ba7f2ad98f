"""One node of a Redis Cluster on one event loop: a multiplexed command connection (wire.py) and
a sharded-pub/sub connection for the bells of the slots it serves (bells.py, ``sharded=True``).

A node does not retry: a connection that cannot be opened fails after ``NODE_RECONNECT_TIMEOUT``
(ShardUnreachable), so cluster.py can ask the cluster who serves the slot now (a dead master's
replica is promoted within seconds) instead of knocking on a dead port for the layer's whole
``reconnect_timeout``.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .bells import Bells
from .cluster_slots import NodeName
from .reconnect import Reconnector
from .shard import Script, ScriptNotLoaded, script_reply
from .wire import Wire, open_wire, pack

NODE_RECONNECT_TIMEOUT = 0.3  # seconds a node's connection is retried before the cluster is asked again


class ClusterNode:
    def __init__(self, name: NodeName, options: dict, scripts: tuple[Script, ...]):
        self.name = name
        self._scripts = scripts
        options = {**options, "host": name.host, "port": name.port, "retry": Retry(NoBackoff(), 0)}
        self._pool = ConnectionPool(**options)
        self._timeout = options.get("socket_timeout")
        self.reconnector = Reconnector(str(name), NODE_RECONNECT_TIMEOUT)
        self.bells = Bells(self._pool, self.reconnector, sharded=True)
        self._wire: Wire | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    def open_wire(self) -> Wire | None:
        """The command connection if it is open (to queue on without awaiting), else None."""
        wire = self._wire
        return wire if wire is not None and not wire.closed else None

    async def connected(self) -> Wire:
        """The command connection, opened if need be. Nothing was sent when this raises."""
        wire = self.open_wire()
        if wire is not None:
            return wire
        async with self._connecting:
            if self._closed:
                raise RuntimeError("this channel layer connection was closed")
            wire = self.open_wire()
            if wire is None:
                wire = self._wire = await self.reconnector.open(lambda: open_wire(self._pool, self._timeout))
            return wire

    async def call(self, *args):
        return await (await self.connected()).call(pack(*args))

    def queue_script(self, wire: Wire, script: Script, keys: list, args: list, asking: bool = False,
                     more_follow: bool = False) -> asyncio.Future:
        """Queue ``script`` on ``wire`` (after ASKING, for a slot being imported); its reply's future.
        ``more_follow``: as ``Wire.call``'s (the caller then calls ``write_now``)."""
        if asking:
            wire.call(pack(b"ASKING"), more_follow)
        return wire.call(pack(b"EVALSHA", script.sha, len(keys), *keys, *args), more_follow)

    async def run(self, script: Script, keys: list, args: list, after_write: Callable[[], None] | None = None,
                  asking: bool = False):
        """Run ``script``; loads the scripts once if the node has none (NOSCRIPT: it did not run)."""
        wire = await self.connected()
        reply = self.queue_script(wire, script, keys, args, asking, more_follow=after_write is not None)
        try:
            return await script_reply(wire, reply, after_write)
        except ScriptNotLoaded:
            pass
        await self.load_scripts()
        return await self.queue_script(await self.connected(), script, keys, args, asking)

    async def load_scripts(self) -> None:
        wire = await self.connected()
        await asyncio.gather(*(wire.call(pack(b"SCRIPT", b"LOAD", script.source)) for script in self._scripts))

    def is_connected(self) -> bool:
        return self.open_wire() is not None

    async def aclose(self) -> None:
        self._closed = True
        if self._wire is not None:
            self._wire.close()
        self._wire = None
        self.bells.close()
        await self._pool.disconnect()
