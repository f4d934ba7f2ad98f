"""RedisChannelLayer: a Django Channels 4 BACKEND on Redis, sharded by consistent hashing.

Takes channels_redis's config keys (hosts, prefix, expiry, group_expiry, capacity,
channel_capacity, symmetric_encryption_keys), and ``reconnect_timeout`` (seconds, default 5): how
long a call keeps trying to connect to a shard nobody answers on before it raises
ShardUnreachable naming the shard's address; a restart, shorter than that, is ridden out, and a
receive waiting on a healthy server waits for ever. Group memberships this object added are added
again when a shard's server restarted without its state (memberships.py). Every send and every group_send to a shard is
one atomic Lua script; receives never poll on a timer and never lose a message to a
cancellation; expiry uses the server's clock. See scripts.py for the storage layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from functools import partial

from redis.exceptions import ResponseError

from ..core.codec import DEFAULT_MESSAGE_SIZE_LIMIT
from ..core.config import reject_unknown_keys
from ..core.errors import ChannelFull, LayerConfigError, MessageTooLarge, UnserialisableMessage
from ..core.layer_core import LayerCore
from ..core.loops import PerLoop, loop_clock
from ..core.names import check_channel_name
from ..core.statistics import STATISTICS_EXTENSION, ChannelStatistics, Counters, LayerStatistics
from .cluster import ClusterShard
from .cluster_keys import ClusterKeySpace
from .copies import Copy
from .deliveries import Claims, Takers
from .hashring import HashRing
from .hosts import ClusterAddress, parse_hosts
from .keys import KeySpace
from .memberships import MembershipBook
from .own_groups import OwnGroups
from .pops import Pop, pop_behind, pop_one
from .receiver import Receiver
from .reconnect import DEFAULT_RECONNECT_TIMEOUT, TRANSIENT_ERRORS, ShardUnreachable
from .returns import hold_carried, return_held
from .shard import ShardClient
from .shelf import CopyShelf
from .wire import USES_HIREDIS

__all__ = ["RedisChannelLayer", "ChannelFull", "MessageTooLarge", "UnserialisableMessage", "ShardUnreachable"]

_KNOWN_KEYS = ("hosts", "prefix", "expiry", "group_expiry", "capacity", "channel_capacity",
               "symmetric_encryption_keys", "message_size_limit", "reconnect_timeout")


@dataclass
class _LoopState:
    shards: list[ShardClient | ClusterShard]
    shelf: CopyShelf  # group copies and messages read ahead, for this loop's receives
    receivers: dict[str, Receiver]  # capacity key -> its receiver
    takers: Takers  # group copies delivered to this loop's receives (deliveries.py)
    taking: set[str]  # capacity keys with a receive popping at once
    # Process keys a receive of this loop waited on: a loop that receives lives on (async_to_sync's
    # die with their call, and what their pops took would only go back to Redis), so its
    # group_sends may pop.
    receiving: set[str] = field(default_factory=set)


class RedisChannelLayer(LayerCore):
    """Channels and groups in one or more Redis servers (``hosts``), sharded by a hash ring."""

    uses_hiredis = USES_HIREDIS  # replies are parsed with hiredis when it is installed
    extensions = [*LayerCore.extensions, STATISTICS_EXTENSION]

    def __init__(self, hosts=None, prefix="asgi", expiry=60, group_expiry=86400, capacity=100,
                 channel_capacity=None, symmetric_encryption_keys=None,
                 message_size_limit=DEFAULT_MESSAGE_SIZE_LIMIT, reconnect_timeout=DEFAULT_RECONNECT_TIMEOUT,
                 **unknown):
        reject_unknown_keys("RedisChannelLayer", unknown, _KNOWN_KEYS)
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity,
                         channel_capacity=channel_capacity, message_size_limit=message_size_limit,
                         symmetric_encryption_keys=symmetric_encryption_keys)
        if not isinstance(prefix, str) or not prefix:
            raise LayerConfigError(f"prefix must be a non-empty str, got {prefix!r}")
        self.prefix = prefix
        if isinstance(reconnect_timeout, bool) or not isinstance(reconnect_timeout, (int, float)) \
                or not reconnect_timeout > 0:
            raise LayerConfigError(f"reconnect_timeout must be a number of seconds > 0, got {reconnect_timeout!r}")
        self.reconnect_timeout = float(reconnect_timeout)
        self.addresses = parse_hosts(hosts)
        if any(isinstance(address, ClusterAddress) for address in self.addresses):
            ClusterKeySpace(prefix)  # refuses a prefix that would break the cluster's hash tags
        self.ring = HashRing([address.name for address in self.addresses])
        self.keys = KeySpace(prefix)
        self._expiry_ms = max(1, round(self.expiry * 1000))
        self._group_expiry_ms = max(1, round(self.group_expiry * 1000))
        self._carried: list[Copy] = []  # held copies an ended loop could not give back (returns.py)
        self._carried_lock = threading.Lock()  # loops end and begin in threads of their own
        self._loops: PerLoop[_LoopState] = PerLoop(self._new_loop_state, self._close_loop_state)
        self._counters = Counters()
        self._memberships = MembershipBook(len(self.addresses))
        self._own_groups = OwnGroups()  # where a group_send pops this object's copies behind it
        self._claims = Claims()  # which loop takes each process key's deliveries

    def __repr__(self):
        return f"{type(self).__name__}(hosts={[a.name for a in self.addresses]}, prefix={self.prefix!r})"

    # --- where things live -----------------------------------------------------------------
    def shard_index(self, channel: str) -> int:
        """The shard of ``channel``: by its capacity key, so all ``p!*`` of a process share one."""
        return self.ring.index_for(self.keys.capacity_key(channel))

    # --- channels --------------------------------------------------------------------------
    async def _send(self, channel: str, data: bytes) -> None:
        state = self._loops.current()
        key = self.keys.capacity_key(channel)
        receiver = state.receivers.get(key)
        capacity = self.capacities.for_channel(channel)
        if state.shelf:  # group copies held here count against the key, as if still queued
            capacity -= state.shelf.held_for(key, asyncio.get_running_loop().time())
        queued = await state.shards[self.ring.index_for(key)].send(
            channel, data, self._expiry_ms, capacity, receiver.poke if receiver is not None else None)
        if not queued:
            self._counters.channel_full_raised += 1
            raise ChannelFull(f"channel {channel!r} is full")

    async def receive(self, channel: str) -> dict:
        """The next message on ``channel``. Members receiving one after another take a copy held
        here at once (it came by a pop for checked channels); members waiting again wait on their
        key's receiver at once: neither needs a name check, a pop or another coroutine."""
        state = self._loops.current()
        if type(channel) is str:
            body = state.shelf.take_ready(channel)
            if body is not None:
                return self.codec.decode(body)
        key = self.receivable_as(channel, self.keys.capacity_key)
        receiver = None if state.shelf.holds(channel) else state.receivers.get(key)
        if receiver is None:
            taken = await self._take_or_find_receiver(state, key, channel)
            if isinstance(taken, bytes):
                return self.codec.decode(taken)
            receiver = taken
        future = receiver.wait(channel)
        try:
            entry = await future
        except BaseException:
            self._abandon(receiver, channel, future)
            raise
        return self.codec.decode(entry.split(b":", 2)[2])

    async def _take_or_find_receiver(self, state: _LoopState, key: str, channel: str) -> bytes | Receiver:
        """A message of the checked ``channel`` (capacity key ``key``) taken at once (its body),
        or the receiver to wait on."""
        copy = await self._take_held(state, key, channel) if state.shelf.holds(channel) else None
        if copy is not None:
            return copy.body
        if key != channel:  # a process key (only those get group copies): a few per loop
            state.receiving.add(key)
        if key not in state.receivers and key not in state.taking:
            entry = await self._take_at_once(state, key, channel)
            if entry is not None:
                return entry.split(b":", 2)[2]
            copy = await self._take_held(state, key, channel) if state.shelf.holds(channel) else None
            if copy is not None:  # the pop found older messages read ahead meanwhile
                return copy.body
        return state.receivers.get(key) or self._receiver(channel)

    def _abandon(self, receiver: Receiver, channel: str, future: asyncio.Future) -> None:
        """A receive waiting on ``future`` ends with an error (cancelled, most often): a message it
        was handed meanwhile goes to the next receiver, or back to Redis; else it stops waiting."""
        if future.done() and not future.cancelled() and future.exception() is None:
            self._give_back(channel, future.result())
        elif not future.done() or future.cancelled():
            receiver.remove_waiter(channel, future)

    def _give_back(self, channel: str, entry: bytes) -> None:
        self._receiver(channel).give_back(channel, entry)

    async def _take_held(self, state: _LoopState, key: str, channel: str) -> Copy | None:
        """The oldest copy this loop holds for ``channel`` (of capacity key ``key``), once sure no
        flush came since its pop (flushes.py: a round trip only while the shard's flushes are not
        heard). Members receiving one after another come here once each: kept lean."""
        flushes = state.shards[self.ring.index_for(key)].flushes_for(key)
        now = asyncio.get_running_loop().time()
        if not flushes.current_at(now):
            await flushes.listen()
            now = asyncio.get_running_loop().time()
        return state.shelf.take(channel, now)

    async def _take_at_once(self, state: _LoopState, key: str, channel: str) -> bytes | None:
        """Nobody here waits on ``key``: pop one message of ``channel`` from this task (a message is
        there, most often). None if none was, or the pop failed: the receiver loop then waits."""
        shard = state.shards[self.ring.index_for(key)]
        state.taking.add(key)
        try:
            messages = await pop_one(shard, key, channel, state.shelf, self._give_back)
        except ShardUnreachable:
            raise  # for reconnect_timeout already: the receive fails, naming the shard
        except (ResponseError, *TRANSIENT_ERRORS):
            return None
        finally:
            state.taking.discard(key)
            receiver = state.receivers.get(key)
            if receiver is not None and state.shelf:
                receiver.look_at_shelf()  # a receive that came meanwhile may have a copy here
        return messages[0][1] if messages else None

    def _receiver(self, channel: str) -> Receiver:
        state = self._loops.current()
        key = self.keys.capacity_key(channel)
        receiver = state.receivers.get(key)
        if receiver is None:
            def forget(idle: Receiver, receivers=state.receivers, key=key):
                if receivers.get(key) is idle:
                    del receivers[key]
                    state.takers.idle(key)

            shard = state.shards[self.ring.index_for(key)]
            receiver = state.receivers[key] = Receiver(shard, key, self._expiry_ms + 1000, forget, state.shelf)
            state.takers.wanted(key)
        return receiver

    # --- groups ----------------------------------------------------------------------------
    async def _group_add(self, group: str, channel: str) -> None:
        key = self.keys.capacity_key(channel)
        index = self.ring.index_for(key)  # shard_index, with the key at hand
        self._memberships.added(index, group, channel, self.group_expiry)
        if key != channel and self.namer.made(channel):
            self._own_groups.added(group, key, channel)
        await self._loops.current().shards[index].group_add(group, channel, self._group_expiry_ms,
                                                             self.capacities.for_channel(channel))

    async def _group_discard(self, group: str, channel: str) -> None:
        key = self.keys.capacity_key(channel)
        index = self.ring.index_for(key)  # shard_index, with the key at hand
        self._memberships.discarded(index, group, channel)
        self._own_groups.discarded(group, key, channel)
        await self._loops.current().shards[index].group_discard(group, channel)

    async def _group_send(self, group: str, data: bytes) -> None:
        """One script per shard, all at once; each pushes to the members that live on it. The
        copies of this object's own members nobody waits for on this (receiving) loop are
        popped right behind (own_groups.py): its receives that follow find them held."""
        state = self._loops.current()
        held = state.shelf.held_keys(asyncio.get_running_loop().time()) if state.shelf else {}
        prefetch = [key for key in self._own_groups.keys_in(group)
                    if key in state.receiving and key not in state.receivers and key not in state.taking]
        pops: list[Pop] = []
        sends = [shard.group_send(group, data, self._expiry_ms, self.capacity,
                                  self._after_group_send(state, shard, prefetch, pops), held, state.takers.keys)
                 for shard in state.shards]
        if len(sends) == 1:  # one shard: awaited here, with no task for gather to make and wait on
            try:
                results: list[int | BaseException] = [await sends[0]]
            except Exception as exc:  # noqa: BLE001 - raised below, once the pops are in
                results = [exc]
        else:
            results = await asyncio.gather(*sends, return_exceptions=True)
        for pop in pops:  # each reply follows its script's: the copies are shelved as it comes
            with contextlib.suppress(Exception):
                await pop.ready
            receiver = state.receivers.get(pop.capacity_key)
            if receiver is not None:
                receiver.look_at_shelf()  # a receive that came meanwhile may have a copy there
        missed = 0
        for result in results:
            if isinstance(result, BaseException):
                raise result
            missed += result
        self._counters.group_deliveries_missed += missed

    def _after_group_send(self, state: _LoopState, shard: ShardClient | ClusterShard, prefetch: list[str],
                          pops: list[Pop]):
        """What runs once a group_send's script is queued on ``shard``: this loop's receivers there
        pop again, and the ``prefetch`` keys living there are popped into ``pops``."""
        poke = self._poker(state, shard)
        mine = [key for key in prefetch if state.shards[self.ring.index_for(key)] is shard]
        return pop_behind(shard, mine, state.shelf, pops, poke) if mine else poke

    @staticmethod
    def _poker(state: _LoopState, shard: ShardClient | ClusterShard):
        """Pokes this loop's receivers on ``shard``: a group_send may have pushed to them."""
        receivers = [receiver for receiver in state.receivers.values() if receiver.shard is shard]
        if not receivers:
            return None

        def poke():
            for receiver in receivers:
                receiver.poke()

        return poke

    # --- statistics ------------------------------------------------------------------------
    async def statistics(self, channels: list[str] | None = None) -> LayerStatistics:
        """Messages waiting per channel (``channels``, or every channel of this prefix on every
        shard), this object's ChannelFull and missed-group-delivery counts, and the state of
        this event loop's connection to each shard. The oldest message's age is read from its
        expiry stamp and this layer's ``expiry``."""
        state = self._loops.current()
        await self._hear_flushes(state)
        if channels is None:
            found = await asyncio.gather(*(shard.channels() for shard in state.shards))
            for channel in state.shelf.channels():
                found[self.shard_index(channel)].append(channel)
            wanted = [sorted(set(names)) for names in found]
        else:
            wanted = [[] for _ in state.shards]
            for channel in channels:
                wanted[self.shard_index(check_channel_name(channel))].append(channel)
        replies = await asyncio.gather(*(shard.waiting(names) for shard, names in zip(state.shards, wanted)))
        table = {}
        now = asyncio.get_running_loop().time()
        for names, (now_ms, rows) in zip(wanted, replies):
            for name, (waiting, expires_ms) in zip(names, rows):
                held, deadline = state.shelf.waiting(name, now)
                if held and deadline is not None:  # copies of group_sends this loop holds for the channel are older
                    waiting += held
                    expires_ms = now_ms + round((deadline - now) * 1000)
                age = max(0.0, (now_ms - expires_ms + self._expiry_ms) / 1000) if waiting else None
                table[name] = ChannelStatistics(waiting, age)
        return LayerStatistics(
            channels=table,
            channel_full_raised=self._counters.channel_full_raised,
            group_deliveries_missed=self._counters.group_deliveries_missed,
            connections={shard.address.name: shard.connection_state() for shard in state.shards})

    async def _hear_flushes(self, state: _LoopState) -> None:
        """Before copies held here are counted: listen for the flushes of their keys where this
        loop is not listening (flushes.py), so what a flush in another process ended is dropped,
        not counted as waiting. Nothing to do while it listens (every receive keeps it so)."""
        if not state.shelf:
            return
        keys = {self.keys.capacity_key(channel) for channel in state.shelf.channels()}
        watches = {state.shards[self.ring.index_for(key)].flushes_for(key) for key in keys}
        await asyncio.gather(*(watch.listen() for watch in watches if not watch.current))

    # --- whole layer -----------------------------------------------------------------------
    async def _flush(self) -> None:
        self._memberships.forget_all()
        self._own_groups.forget_all()
        state = self._loops.current()
        state.shelf.clear()
        with self._carried_lock:
            self._carried.clear()
        await asyncio.gather(*(shard.flush() for shard in state.shards))

    async def _close(self) -> None:
        state = self._loops.pop_current()
        if state is not None:
            await self._close_loop_state(state)

    async def close_pools(self) -> None:
        """channels_redis's name for ``close()``, so code moved from it (tests, task runners) runs."""
        await self.close()

    def _new_loop_state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        shards = [
            ClusterShard(address, self.prefix, self.reconnect_timeout) if isinstance(address, ClusterAddress) else
            ShardClient(address, self.keys, self.reconnect_timeout, self._memberships, index,
                        self.capacities.for_channel)
            for index, address in enumerate(self.addresses)]

        def uncount(copy: Copy) -> None:  # only a ShardClient reads ahead (copies.py)
            shard = shards[self.ring.index_for(copy.capacity_key)]
            if isinstance(shard, ShardClient):
                shard.uncount(copy)

        shelf = CopyShelf(uncount, loop_clock(loop))
        for index, shard in enumerate(shards):
            if isinstance(shard, ShardClient):
                shard.flushes.on_flush = partial(self._drop_flushed, shelf, index)
            else:
                shard.key_flushes.on_flush = partial(self._drop_key_flushed, shelf)
        with self._carried_lock:
            carried, self._carried = self._carried, []
        if carried:  # copies an ended loop could not give back: held here, as its own pop's would be
            hold_carried(shelf, carried, lambda key: shards[self.ring.index_for(key)].flushes_for(key).current_at)
        receivers: dict[str, Receiver] = {}
        taking: set[str] = set()
        takers = Takers(lambda key: shards[self.ring.index_for(key)], shelf, self._claims, receivers, taking)
        return _LoopState(shards, shelf, receivers, takers, taking)

    def _drop_flushed(self, shelf: CopyShelf, index: int, epoch: int) -> None:
        """Shard ``index`` is in flush epoch ``epoch`` now: what was held of another is gone (flushes.py)."""
        shelf.drop(lambda copy: copy.epoch != epoch and self.ring.index_for(copy.capacity_key) == index)

    @staticmethod
    def _drop_key_flushed(shelf: CopyShelf, capacity_key: str, epoch: int) -> None:
        """A cluster's process key is in flush epoch ``epoch`` now (cluster_flushes.py): the same."""
        shelf.drop(lambda copy: copy.epoch != epoch and copy.capacity_key == capacity_key)

    async def _close_loop_state(self, state: _LoopState) -> None:
        receivers = list(state.receivers.values())
        await asyncio.gather(*(receiver.stop() for receiver in receivers), return_exceptions=True)
        for receiver in receivers:
            receiver.fail_waiters(RuntimeError("the channel layer was closed while this receive waited"))
        state.receivers.clear()
        await state.takers.close()  # what came before it left is held, and given back below
        carried = await return_held(state.shelf, lambda channel: state.shards[self.shard_index(channel)],
                                    self.keys.capacity_key, self._expiry_ms + 1000)
        with self._carried_lock:
            self._carried.extend(carried)
        await asyncio.gather(*(shard.aclose() for shard in state.shards), return_exceptions=True)
