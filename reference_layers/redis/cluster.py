"""A whole Redis Cluster as one shard of the layer: the ShardClient operations, routed by slot.

Every key of a channel shares its capacity key's slot, every key of a group the group's
(cluster_keys.py), so a send, a pop, a push-back, a group_add is one script on one node, as on a
single server. group_send is two round trips: a script on the group's node pushes to the normal
channels there, returns the others and gathers the ``p!*`` members per process, then one
PUSH_MANY per other node and one PUSH_COPIES per receiving process (one copy for all its
members), all at once (cluster_scripts.py). Wake-ups are sharded pub/sub on the node of the
bell's slot (cluster_bells.py); flushes are told per process key (cluster_flushes.py).

Routing by slot, following the cluster when it moves one: cluster_routing.py.

A failover loses what the dead master had not yet replicated (Redis replication is
asynchronous): sends that returned can be lost in that window. Memberships are not added again
after a failover (the replica has them); see the README.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ..core.statistics import ConnectionState
from . import cluster_scripts
from .cluster_bells import ClusterBells
from .cluster_flushes import KeyFlushes, process_key_of
from .cluster_keys import ClusterKeySpace
from .cluster_node import ClusterNode
from .cluster_routing import RETRY_FIRST, RETRY_MAX, ClusterRouter, cluster_error
from .cluster_slots import NodeName, key_slot
from .flushes import FlushWatch, Unwatched
from .hosts import ClusterAddress
from .reconnect import ShardUnreachable
from .scripts import pop_arguments
from .shard import Script, _unheard
from .wire import pack

_SCAN_BATCH = 500

SCRIPTS = SEND, POP, PUSH_BACK, GROUP_ADD, GROUP_DISCARD, GROUP_SEND, PUSH_MANY, PUSH_COPIES, STATS, FLUSHED = tuple(
    Script(source) for source in (
        cluster_scripts.SEND, cluster_scripts.POP, cluster_scripts.PUSH_BACK, cluster_scripts.GROUP_ADD,
        cluster_scripts.GROUP_DISCARD, cluster_scripts.GROUP_SEND, cluster_scripts.PUSH_MANY,
        cluster_scripts.PUSH_COPIES, cluster_scripts.STATS, cluster_scripts.FLUSHED))


class ClusterShard(ClusterRouter):
    """The operations of :class:`~.shard.ShardClient` on a Redis Cluster, for one event loop."""

    def __init__(self, address: ClusterAddress, prefix: str, reconnect_timeout: float):
        super().__init__(address, reconnect_timeout, SCRIPTS)
        self.keys = ClusterKeySpace(prefix)
        self.bells = ClusterBells(self.on_slot, lambda: list(self._nodes.values()))
        self.flushes = Unwatched()  # no read-ahead here: what a loop holds is watched per process key
        self.key_flushes = KeyFlushes(self.bells, self.keys.epoch, self._read_epoch, self._answer)

    def flushes_for(self, capacity_key: str) -> FlushWatch | Unwatched:
        """The flush watch of what this loop holds of ``capacity_key`` (cluster_flushes.py)."""
        return self.key_flushes.for_key(capacity_key)

    async def _read_epoch(self, epoch_key: str) -> bytes | None:
        return await self.on_slot(key_slot(epoch_key), lambda node, asking: node.call(b"GET", epoch_key))

    def _answer(self, channel: bytes, epoch: int) -> None:
        """Publish ``epoch`` on ``channel`` now if its node's connection is open (else a flush
        waiting for the answer gives up after flushes.ACK_TIMEOUT)."""
        owner = self._map.owner(key_slot(channel)) if self._map is not None else None
        node = self._nodes.get(owner) if owner is not None else None
        wire = node.open_wire() if node is not None else None
        if wire is not None:
            wire.call(pack(b"SPUBLISH", channel, epoch)).add_done_callback(_unheard)

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

    def _pop_args(self, capacity_key: str, wanted: dict[str, int]) -> list:
        return pop_arguments(self.keys.queues_of(capacity_key), self.read_ahead(capacity_key), capacity_key, wanted)

    @staticmethod
    def read_ahead(capacity_key: str) -> int:
        """None here: taking a read-ahead message would need its uncount routed by slot (copies.py)."""
        return 0

    async def start_pop(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]]:
        channels = list(wanted)
        keys, counts = self.keys.pop_keys(capacity_key), self._pop_args(capacity_key, wanted)

        async def attempt(node: ClusterNode, asking: bool) -> asyncio.Future:
            return node.queue_script(await node.connected(), POP, keys, counts, asking)

        return self._refusal_as_transient(await self.on_slot(key_slot(keys[0]), attempt)), channels

    def pop_now(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]] | None:
        """A pop queued without awaiting; None unless the map is fresh and the node connected."""
        keys = self.keys.pop_keys(capacity_key)
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
                if cluster_error(error) or isinstance(error, RedisConnectionError):
                    self._stale = True
                if cluster_error(error):
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
                         after_write: Callable[[], None] | None = None, held: dict[str, int] | None = None,
                         own: Iterable[str] = ()) -> int:
        """Push to every member; returns how many missed it, being full. Two round trips (see the
        docstring): GROUP_SEND on the group's node, then PUSH_MANY and PUSH_COPIES at once.
        (``own`` is for a ShardClient: a cluster's copies always wait in an inbox.)
        ``held``: capacity key -> group copies this loop holds for it, which count against it."""
        keys = self._group_keys(group)
        reply = await self._run_on(key_slot(keys[0]), GROUP_SEND, keys, [self.keys.prefix, expiry_ms, capacity, body])
        elsewhere, held = reply[1], held or {}
        members = [(elsewhere[i].decode(), int(elsewhere[i + 1])) for i in range(0, len(elsewhere), 2)]
        copies = []
        for i in range(2, len(reply), 4):
            process = reply[i].decode()
            copies.append(self._push_copies(process, int(reply[i + 1]) - held.get(process, 0), int(reply[i + 2]),
                                            reply[i + 3], body, expiry_ms))
        missed = int(reply[0]) + sum(await asyncio.gather(self._push_to_members(group, members, body, expiry_ms),
                                                          *copies))
        if after_write is not None:
            after_write()
        return missed

    async def _push_copies(self, process: str, capacity: int, members: int, roster: bytes, body: bytes,
                           expiry_ms: int) -> int:
        """One inbox entry for a process's ``members`` (local names in ``roster``): how many missed it."""
        keys = [self.keys.inbox(process), self.keys.count(process), self.keys.bell(process)]
        return int(await self._run_on(key_slot(keys[0]), PUSH_COPIES, keys,
                                      [expiry_ms, capacity, members, roster, body]))

    async def _push_to_members(self, group: str, members: list[tuple[str, int]], body: bytes, expiry_ms: int) -> int:
        """Push to normal channels served by other nodes than the group's: how many missed it."""
        missed = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience
        delay = RETRY_FIRST
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
                delay = min(delay * 2, RETRY_MAX)
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
            if cluster_error(exc):
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
        """Delete this prefix's keys on every master, one UNLINK per key (they are in many slots),
        then move on the flush epoch of every process key found (cluster_flushes.py)."""
        processes: set[str] = set()
        for name in (await self.slot_map()).masters():
            node = self.node(name)
            cursor = b"0"
            while True:
                cursor, found = await node.call(b"SCAN", cursor, b"MATCH", self.keys.pattern, b"COUNT", _SCAN_BATCH)
                for key in found:
                    process = process_key_of(key.decode(), self.keys.prefix)
                    if process is not None:
                        processes.add(process)
                await asyncio.gather(*(node.call(b"UNLINK", key) for key in found))
                if cursor == b"0":
                    break
        await asyncio.gather(*(self._announce(process) for process in processes))

    async def _announce(self, process: str) -> None:
        epoch_key = self.keys.epoch(process)
        await self.key_flushes.announce(process, lambda: self._run_on(key_slot(epoch_key), FLUSHED, [epoch_key], []))

    async def aclose(self) -> None:
        self.key_flushes.close()
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(*(node.aclose() for node in nodes), return_exceptions=True)

