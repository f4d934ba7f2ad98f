"""A whole Redis Cluster as one shard of the layer: the ShardClient operations, routed by slot.

Every key of a channel shares its capacity key's slot, every key of a group the group's
(cluster_keys.py), so a send, a pop, a push-back, a group_add is one script on one node, as on a
single server. group_send is one round trip per node holding members: a script on the group's
node pushes to the members there and returns the others, then one PUSH_MANY per other node, all
at once (cluster_scripts.py). Wake-ups are sharded
pub/sub on the node of the bell's slot (cluster_node.py).

Routing uses our own slot map (cluster_slots.py, where the docstring says why not redis-py's
RedisCluster). When the cluster moves a slot, the map follows:

- MOVED: the slot's new owner is noted and the command sent there; ASK: sent there once after
  ASKING; TRYAGAIN / CLUSTERDOWN: the map is read again and the command retried after a pause;
- a node that cannot be connected to (nothing was sent): the map is read again (a dead master's
  replica is promoted after ``cluster-node-timeout`` and an election) and the command retried,
  for at most ``max(reconnect_timeout, FAILOVER_PATIENCE)``, then ShardUnreachable;
- a connection lost while a command was on it: the command may have run, so it is not sent
  again (a send raises, as on one server); the map is read again before the next one.

A failover loses what the dead master had not yet replicated (Redis replication is
asynchronous): sends that returned can be lost in that window. Memberships are not added again
after a failover (the replica has them); see the README.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ..core.statistics import ConnectionState
from . import cluster_scripts
from .bells import Listener
from .cluster_keys import ClusterKeySpace
from .cluster_node import ClusterNode
from .cluster_slots import NodeName, SlotMap, key_slot, parse_redirect
from .flushes import Unwatched
from .hosts import ClusterAddress
from .reconnect import TRANSIENT_ERRORS, ShardUnreachable
from .shard import Script

T = TypeVar("T")

FAILOVER_PATIENCE = 10.0  # seconds a slot may go unserved (a failover) before a call gives up
MAX_REDIRECTS = 16  # MOVED/ASK in a row for one call: more means the cluster is being resharded wildly
_RETRY_FIRST, _RETRY_MAX = 0.05, 0.5
_SCAN_BATCH = 500
_RETRYABLE = ("TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING")

SCRIPTS = SEND, POP, PUSH_BACK, GROUP_ADD, GROUP_DISCARD, GROUP_SEND, PUSH_MANY, STATS = tuple(
    Script(source) for source in (
        cluster_scripts.SEND, cluster_scripts.POP, cluster_scripts.PUSH_BACK, cluster_scripts.GROUP_ADD,
        cluster_scripts.GROUP_DISCARD, cluster_scripts.GROUP_SEND, cluster_scripts.PUSH_MANY,
        cluster_scripts.STATS))


def _cluster_error(error: BaseException) -> bool:
    """A refusal by a node that did not run the command (redirect, slot down): safe to retry."""
    return isinstance(error, ResponseError) and (
        parse_redirect(str(error)) is not None or str(error).startswith(_RETRYABLE))


class ClusterShard:
    """The operations of :class:`~.shard.ShardClient` on a Redis Cluster, for one event loop."""

    def __init__(self, address: ClusterAddress, prefix: str, reconnect_timeout: float):
        self.address = address
        self.keys = ClusterKeySpace(prefix)
        self._patience = max(reconnect_timeout, FAILOVER_PATIENCE)
        self._startup = [NodeName(options["host"], options["port"]) for options in address.startup]
        self._nodes: dict[NodeName, ClusterNode] = {}
        self._map: SlotMap | None = None
        self._stale = True  # read the map before the next command
        self._reading: asyncio.Task[None] | None = None
        self.bells = ClusterBells(self)
        self.flushes = Unwatched()

    # --- the slot map ------------------------------------------------------------------------
    def node(self, name: NodeName) -> ClusterNode:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = ClusterNode(name, self.address.options, SCRIPTS)
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
        delay, redirects = _RETRY_FIRST, 0
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
                if not _cluster_error(exc):
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
            delay = min(delay * 2, _RETRY_MAX)

    def _run_on(self, slot: int, script: Script, keys: list, args: list,
                after_write: Callable[[], None] | None = None) -> Awaitable:
        return self.on_slot(slot, lambda node, asking: node.run(script, keys, args, after_write, asking))

    # --- channels --------------------------------------------------------------------------
    async def send(self, channel: str, body: bytes, expiry_ms: int, capacity: int,
                   after_write: Callable[[], None] | None = None) -> bool:
        key = self.keys.capacity_key(channel)
        return bool(await self._run_on(key_slot(self.keys.count(key)), SEND,
                                       [self.keys.queue(channel), self.keys.count(key), self.keys.bell(key)],
                                       [expiry_ms, capacity, body], after_write))

    def _pop_keys(self, capacity_key: str, channels: list[str]) -> list[str]:
        keys = self.keys
        return [keys.count(capacity_key), keys.bell(capacity_key), keys.inbox(capacity_key), keys.epoch(capacity_key),
                *map(keys.queue, channels)]

    def _pop_args(self, capacity_key: str, wanted: dict[str, int]) -> list:
        return [self.keys.queues_of(capacity_key), self.read_ahead(capacity_key), *wanted.values()]

    @staticmethod
    def read_ahead(capacity_key: str) -> int:
        """None here: taking a read-ahead message would need its uncount routed by slot (copies.py)."""
        return 0

    async def start_pop(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]]:
        channels = list(wanted)
        keys, counts = self._pop_keys(capacity_key, channels), self._pop_args(capacity_key, wanted)

        async def attempt(node: ClusterNode, asking: bool) -> asyncio.Future:
            return node.queue_script(await node.connected(), POP, keys, counts, asking)

        return self._refusal_as_transient(await self.on_slot(key_slot(keys[0]), attempt)), channels

    def pop_now(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]] | None:
        """A pop queued without awaiting; None unless the map is fresh and the node connected."""
        keys = self._pop_keys(capacity_key, list(wanted))
        owner = self._map.owner(key_slot(keys[0])) if self._map is not None and not self._stale else None
        wire = self._nodes[owner].open_wire() if owner in self._nodes else None
        if owner is None or wire is None:
            return None
        future = self._nodes[owner].queue_script(wire, POP, keys, self._pop_args(capacity_key, wanted))
        return self._refusal_as_transient(future), list(wanted)

    def _refusal_as_transient(self, future: asyncio.Future) -> asyncio.Future:
        """A queued pop's reply; a node's refusal (it ran nothing) becomes a connection error, which
        receivers retry after a pause (and the map is read again first)."""
        result = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future) -> None:
            if result.done():
                return
            if done.cancelled():
                result.cancel()
            elif (error := done.exception()) is not None:
                if _cluster_error(error) or isinstance(error, RedisConnectionError):
                    self._stale = True
                if _cluster_error(error):
                    error = RedisConnectionError(f"Redis cluster moved the slot: {error}")
                result.set_exception(error)
            else:
                result.set_result(done.result())

        future.add_done_callback(settle)
        return result

    async def load_scripts(self) -> None:
        await asyncio.gather(*(node.load_scripts() for node in list(self._nodes.values()) if node.is_connected()),
                             return_exceptions=True)

    async def push_back(self, capacity_key: str, channel: str, entries: list[bytes], ttl_ms: int) -> None:
        keys = [self.keys.count(capacity_key), self.keys.bell(capacity_key), self.keys.queue(channel)]
        await self._run_on(key_slot(keys[0]), PUSH_BACK, keys, [ttl_ms, *entries])

    # --- groups -----------------------------------------------------------------------------
    def _group_keys(self, group: str) -> list[str]:
        return [self.keys.group_members(group), self.keys.group_capacities(group)]

    async def group_add(self, group: str, channel: str, group_expiry_ms: int, capacity: int) -> None:
        keys = self._group_keys(group)
        await self._run_on(key_slot(keys[0]), GROUP_ADD, keys, [channel, group_expiry_ms, capacity])

    async def group_discard(self, group: str, channel: str) -> None:
        keys = self._group_keys(group)
        await self._run_on(key_slot(keys[0]), GROUP_DISCARD, keys, [channel])

    async def group_send(self, group: str, body: bytes, expiry_ms: int, capacity: int,
                         after_write: Callable[[], None] | None = None, held: dict[str, int] | None = None) -> int:
        """Push to every member; returns how many missed it, being full. One round trip per node
        holding members: GROUP_SEND on the group's node pushes to the members there and returns
        the others, then one PUSH_MANY on each other node, all at once (so two in a row). No copy is
        ever held in a cluster (its group_send pushes to each member), so ``held`` is empty."""
        keys = self._group_keys(group)
        reply = await self._run_on(key_slot(keys[0]), GROUP_SEND, keys,
                                   [self.keys.prefix, expiry_ms, capacity, body])
        missed = int(reply[0])
        members = [(reply[i].decode(), int(reply[i + 1])) for i in range(1, len(reply), 2)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience
        delay = _RETRY_FIRST
        while members:
            slots = await self.slot_map()
            by_node: dict[NodeName | None, list[tuple[str, int]]] = {}
            for member in members:
                by_node.setdefault(slots.owner(key_slot(self.keys.count(self.keys.capacity_key(member[0])))),
                                   []).append(member)
            results = await asyncio.gather(*(self._push_many(name, batch, body, expiry_ms)
                                             for name, batch in by_node.items()))
            members = [member for _, elsewhere in results for member in elsewhere]
            missed += sum(full for full, _ in results)
            if members:
                self._stale = True
                if loop.time() >= deadline:
                    raise ShardUnreachable(f"Redis cluster {self.address.name}: {len(members)} member(s) of "
                                           f"{group!r} unreachable for {self._patience:g} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
        if after_write is not None:
            after_write()
        return missed

    async def _push_many(self, name: NodeName | None, batch: list[tuple[str, int]], body: bytes,
                         expiry_ms: int) -> tuple[int, list[tuple[str, int]]]:
        """One PUSH_MANY on the node ``name``: (how many missed, the members it does not serve, to
        push elsewhere). A node that ran nothing returns the whole batch."""
        if name is None:
            return 0, batch
        args: list = [expiry_ms, body]
        for member, member_capacity in batch:
            key = self.keys.capacity_key(member)
            args += [self.keys.queue(member), self.keys.count(key), self.keys.bell(key), member_capacity]
        try:
            reply = await self.node(name).run(PUSH_MANY, args[2:5], args)
        except ShardUnreachable:
            return 0, batch
        except ResponseError as exc:
            if _cluster_error(exc):
                return 0, batch
            raise
        return int(reply[0]), [batch[int(index) - 1] for index in reply[1:]]

    # --- statistics -------------------------------------------------------------------------
    async def channels(self) -> list[str]:
        found: set[str] = set()
        for name in (await self.slot_map()).masters():
            cursor = b"0"
            while True:
                cursor, names = await self.node(name).call(b"SCAN", cursor, b"MATCH", self.keys.queue_pattern,
                                                           b"COUNT", _SCAN_BATCH)
                found.update(self.keys.channel_of_queue(key.decode()) for key in names)
                if cursor == b"0":
                    break
        return sorted(found)

    async def waiting(self, channels: list[str]) -> tuple[int, list[tuple[int, int]]]:
        if not channels:
            return 0, []
        by_slot: dict[int, list[int]] = {}  # one STATS per slot: a script's keys share one
        for index, channel in enumerate(channels):
            by_slot.setdefault(key_slot(self.keys.queue(channel)), []).append(index)
        replies = await asyncio.gather(*(
            self._run_on(slot, STATS, [self.keys.queue(channels[i]) for i in indexes],
                         [arg for i in indexes for arg in self.keys.inbox_of(channels[i])])
            for slot, indexes in by_slot.items()))
        rows: list[tuple[int, int]] = [(0, 0)] * len(channels)
        now_ms = 0
        for indexes, reply in zip(by_slot.values(), replies):
            now_ms = max(now_ms, int(reply[0]))
            for place, index in enumerate(indexes):
                rows[index] = (int(reply[1 + 2 * place]), int(reply[2 + 2 * place]))
        return now_ms, rows

    def connection_state(self) -> ConnectionState:
        masters = self._map.masters() if self._map is not None else []
        if not masters or not any(name in self._nodes for name in masters):
            return ConnectionState.NOT_CONNECTED
        connected = all(name in self._nodes and self._nodes[name].is_connected() for name in masters)
        return ConnectionState.CONNECTED if connected else ConnectionState.LOST

    # --- whole cluster ----------------------------------------------------------------------
    async def flush(self) -> None:
        """Delete this prefix's keys on every master, one UNLINK per key (they are in many slots)."""
        for name in (await self.slot_map()).masters():
            node = self.node(name)
            cursor = b"0"
            while True:
                cursor, found = await node.call(b"SCAN", cursor, b"MATCH", self.keys.pattern, b"COUNT", _SCAN_BATCH)
                await asyncio.gather(*(node.call(b"UNLINK", key) for key in found))
                if cursor == b"0":
                    break

    async def aclose(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(*(node.aclose() for node in nodes), return_exceptions=True)


class ClusterBells:
    """The bells of a cluster shard: each subscribed on the node that serves its slot."""

    def __init__(self, shard: ClusterShard):
        self._shard = shard
        self._listeners: dict[bytes, Listener] = {}

    def listen(self, bell: bytes, listener: Listener) -> None:
        self._listeners[bell] = listener

    def forget(self, bell: bytes, listener: Listener) -> None:
        if self._listeners.get(bell) == listener:
            del self._listeners[bell]
        for node in list(self._shard._nodes.values()):  # noqa: SLF001 - the shard's own helper
            node.bells.forget(bell, listener)

    async def subscribe(self, bell: bytes) -> None:
        """Return once a push on ``bell`` is sure to ring, on the node that serves it now."""
        listener = self._listeners.get(bell)

        async def attempt(node: ClusterNode, asking: bool) -> None:
            if listener is not None:
                node.bells.listen(bell, listener)
            await node.bells.subscribe(bell)

        await self._shard.on_slot(key_slot(bell), attempt)

    def close(self) -> None:
        for node in list(self._shard._nodes.values()):  # noqa: SLF001 - the shard's own helper
            node.bells.close()
