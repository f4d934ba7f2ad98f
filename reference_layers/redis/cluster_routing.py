"""Routing a Redis Cluster's commands by slot, with our own slot map (cluster_slots.py, where the
docstring says why not redis-py's RedisCluster). When the cluster moves a slot, the map follows:

- MOVED: the slot's new owner is noted and the command sent there; ASK: sent there once after
  ASKING; TRYAGAIN / CLUSTERDOWN: the map is read again and the command retried after a pause;
- a node that cannot be connected to (nothing was sent): the map is read again (a dead master's
  replica is promoted after ``cluster-node-timeout`` and an election) and the command retried,
  for at most ``max(reconnect_timeout, FAILOVER_PATIENCE)``, then ShardUnreachable;
- a connection lost while a command was on it: the command may have run, so it is not sent
  again (a send raises, as on one server); the map is read again before the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .cluster_node import ClusterNode
from .cluster_slots import NodeName, SlotMap, parse_redirect
from .hosts import ClusterAddress
from .reconnect import TRANSIENT_ERRORS, ShardUnreachable
from .shard import Script

T = TypeVar("T")

FAILOVER_PATIENCE = 10.0  # seconds a slot may go unserved (a failover) before a call gives up
MAX_REDIRECTS = 16  # MOVED/ASK in a row for one call: more means the cluster is being resharded wildly
RETRY_FIRST, RETRY_MAX = 0.05, 0.5  # seconds between retries: the first, the most
_RETRYABLE = ("TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING")


def cluster_error(error: BaseException) -> bool:
    """A refusal by a node that did not run the command (redirect, slot down): safe to retry."""
    return isinstance(error, ResponseError) and (
        parse_redirect(str(error)) is not None or str(error).startswith(_RETRYABLE))


class ClusterRouter:
    """The nodes of one cluster on one event loop, and the slot map that says which serves what."""

    def __init__(self, address: ClusterAddress, reconnect_timeout: float, scripts: tuple[Script, ...]):
        self.address = address
        self._scripts = scripts
        self._patience = max(reconnect_timeout, FAILOVER_PATIENCE)
        self._startup = [NodeName(options["host"], options["port"]) for options in address.startup]
        self._nodes: dict[NodeName, ClusterNode] = {}
        self._map: SlotMap | None = None
        self._stale = True  # read the map before the next command
        self._reading: asyncio.Task[None] | None = None

    def node(self, name: NodeName) -> ClusterNode:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = ClusterNode(name, self.address.options, self._scripts)
        return node

    async def slot_map(self) -> SlotMap:
        if self._stale or self._map is None:
            await self.refresh()
        assert self._map is not None
        return self._map

    async def refresh(self) -> None:
        """Read the slot map again (one reading at a time; callers meanwhile share it)."""
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.ensure_future(self._read_map())
        await asyncio.shield(reading)

    async def _read_map(self) -> None:
        known = self._map.masters() if self._map is not None else []
        candidates = sorted(dict.fromkeys([*known, *self._startup, *self._nodes]),
                            key=lambda name: not self.node(name).is_connected())
        last: BaseException | None = None
        for name in candidates:
            try:
                reply = await self.node(name).call(b"CLUSTER", b"SLOTS")
            except (ResponseError, *TRANSIENT_ERRORS) as exc:
                last = exc
                continue
            self._map = SlotMap.from_cluster_slots(reply, name.host)
            self._stale = False
            return
        raise ShardUnreachable(f"no node of the Redis cluster {self.address.name} answers; last error: {last}")

    async def on_slot(self, slot: int, attempt: Callable[[ClusterNode, bool], Awaitable[T]]) -> T:
        """``await attempt(node, asking)`` on the node serving ``slot``, following redirects, and
        retrying what was surely not run until the slot is served again (see the docstring)."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay, redirects = RETRY_FIRST, 0
        asked: ClusterNode | None = None
        while True:
            error: BaseException
            try:
                if asked is not None:
                    node, asking, asked = asked, True, None
                else:
                    owner = (await self.slot_map()).owner(slot)
                    if owner is None:
                        raise ResponseError(f"CLUSTERDOWN slot {slot} is served by no master")
                    node, asking = self.node(owner), False
                return await attempt(node, asking)
            except ResponseError as exc:
                redirect = parse_redirect(str(exc))
                if redirect is not None and redirects < MAX_REDIRECTS:
                    redirects += 1
                    kind, moved_slot, target = redirect
                    if kind == "ASK":
                        asked = self.node(target)
                    elif self._map is not None:
                        self._map.moved(moved_slot, target)
                    continue
                if not cluster_error(exc):
                    raise
                error = exc
            except ShardUnreachable as exc:  # a node (or every node) could not be connected to: nothing sent
                error = exc
            except RedisConnectionError:
                self._stale = True  # the command may have run: not again, but look before the next
                raise
            self._stale = True
            now = loop.time()
            deadline = now + self._patience if deadline is None else deadline
            if now >= deadline:
                raise ShardUnreachable(f"Redis cluster {self.address.name}: slot {slot} unserved for "
                                       f"{self._patience:g} s; last error: {error}") from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
