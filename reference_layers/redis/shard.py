"""One shard's connections on one event loop, and the layer's operations as single scripts.

Connections belong to the event loop that opened them, so the layer keeps one ShardClient
per (loop, shard). Every non-blocking command of the loop goes over one multiplexed
connection (see wire.py), so concurrent sends and pops share a socket and nothing serialises
them; a second connection listens for the bells of the keys this process receives on
(bells.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Callable, Iterable

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from ..core.names import is_process_specific
from ..core.statistics import ConnectionState
from . import group_scripts, scripts
from .bells import Bells
from .copies import READ_AHEAD, Copy
from .flushes import FlushWatch
from .hosts import ShardAddress
from .keys import KeySpace
from .memberships import MembershipBook
from .reconnect import TRANSIENT_ERRORS, Reconnector
from .sentinel import close_pool, make_pool
from .wire import ReadOnlyReplica, Wire, open_wire, pack

log = logging.getLogger(__name__)
_SCAN_BATCH = 500


class Script:
    """A Lua script run by its SHA1, loaded on the server the first time it is missing there."""

    def __init__(self, source: str):
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


SCRIPTS = SEND, POP, PUSH_BACK, GROUP_ADD, GROUP_DISCARD, GROUP_SEND, STATS, FLUSHED = tuple(
    Script(source) for source in (scripts.SEND, scripts.POP, scripts.PUSH_BACK, group_scripts.GROUP_ADD,
                                  group_scripts.GROUP_DISCARD, group_scripts.GROUP_SEND, scripts.STATS,
                                  scripts.FLUSHED))


def _unheard(reply: asyncio.Future) -> None:
    """A command nobody awaits (a flush's answer): its failure is the connection's, seen by the next command."""
    if not reply.cancelled():
        reply.exception()


def is_noscript(error: ResponseError) -> bool:
    """The server does not have the script (flushed, or restarted): it did not run."""
    return str(error).startswith("NOSCRIPT")


class ScriptNotLoaded(Exception):
    """NOSCRIPT: the server does not have the script (flushed, or restarted), so it did not run."""


async def script_reply(wire: Wire, reply: asyncio.Future, after_write: Callable[[], None] | None):
    """The reply of a script queued on ``wire``, with ``more_follow`` if ``after_write`` is given:
    what that queues (the pops behind the script) leaves in the same write. NOSCRIPT raises
    ScriptNotLoaded, for the caller to load the scripts and run it again."""
    if after_write is not None:
        try:
            after_write()
        finally:
            wire.write_now()
    try:
        return await reply
    except ResponseError as exc:
        if is_noscript(exc):
            raise ScriptNotLoaded from exc
        raise


def _run_id(info: bytes) -> bytes:
    """The ``run_id`` line of ``INFO server``: a new one each time the server starts."""
    for line in info.splitlines():
        if line.startswith(b"run_id:"):
            return line[7:].strip()
    return b""


class ShardClient:
    def __init__(self, address: ShardAddress, keys: KeySpace, reconnect_timeout: float,
                 book: MembershipBook, index: int, capacity_of: Callable[[str], int]):
        self.address = address
        self.keys = keys
        self.reconnector = Reconnector(address.name, reconnect_timeout)
        self._book = book  # this layer's memberships, added again here after a restart
        self._index = index  # this shard's place in hosts (and in the book)
        self._capacity_of = capacity_of
        # No automatic retries: a send whose reply was lost must not be sent twice. A connection
        # that died with its server is replaced by the next command.
        options = {**address.options, "retry": Retry(NoBackoff(), 0)}
        # Only opens (and authenticates) connections; a Sentinel shard's asks for the master first.
        self._pool = make_pool(options, address.sentinel)
        self._timeout = options.get("socket_timeout")
        self._commands: Wire | None = None
        self._connecting = asyncio.Lock()
        self.bells = Bells(self._pool, self.reconnector)
        self._owed: list[tuple] = []  # commands lost with a connection (_owe)
        self.flushes = FlushWatch(self.bells, keys.flush_epoch, lambda: self.call(b"GET", keys.flush_epoch),
                                  lambda channel, epoch: self._tell(b"PUBLISH", channel, epoch))
        self._closed = False

    # --- plumbing ---------------------------------------------------------------------------
    async def call(self, *args):
        wire = self._commands
        if wire is None or wire.closed:
            wire = await self._connect()
        return await wire.call(pack(*args))

    async def _connect(self) -> Wire:
        async with self._connecting:
            if self._closed:
                raise RuntimeError("this channel layer connection was closed")
            wire = self._commands
            if wire is None or wire.closed:
                wire = await self.reconnector.open(lambda: open_wire(self._pool, self._timeout))
                try:
                    await self._restore_memberships(wire)
                except BaseException:
                    wire.close()
                    raise
                self._commands = wire
                owed, self._owed = self._owed, []
                for command in owed:
                    self._owe(command)
            return wire

    async def _restore_memberships(self, wire: Wire) -> None:
        """On a new connection: if the server is not the one seen before (restarted, its state
        lost), load the scripts and add this layer's memberships on this shard again, before
        any other command of this loop goes over the connection (see memberships.py)."""
        try:
            run_id = _run_id(await wire.call(pack(b"INFO", b"server")))
        except ResponseError:  # INFO renamed or forbidden on this server: restarts go unseen
            return
        restores = self._book.to_restore(self._index, run_id)
        if restores:
            log.warning("Redis at %s restarted; adding %d group memberships again", self.address.name, len(restores))
            await asyncio.gather(*(wire.call(pack(b"SCRIPT", b"LOAD", script.source)) for script in SCRIPTS))
            adds = [self._group_add_call(group, channel, left_ms, self._capacity_of(channel))
                    for (group, channel), left_ms in restores]
            await asyncio.gather(*(wire.call(pack(b"EVALSHA", GROUP_ADD.sha, len(keys), *keys, *args))
                                   for keys, args in adds))
        self._book.connected(self._index, run_id)

    async def run(self, script: Script, keys: list, args: list,
                  after_write: Callable[[], None] | None = None, retry_if_demoted: bool = True):
        wire = self._commands
        if wire is None or wire.closed:
            wire = await self._connect()
        reply = wire.call(pack(b"EVALSHA", script.sha, len(keys), *keys, *args), more_follow=after_write is not None)
        try:
            return await script_reply(wire, reply, after_write)
        except ReadOnlyReplica:
            if not retry_if_demoted:
                raise
            # The master was demoted, so the script wrote nothing (a replica refuses the first
            # write); the wire is closed, and the next connection asks the sentinels again.
            return await self.run(script, keys, args, retry_if_demoted=False)
        except ScriptNotLoaded:
            pass
        await self.load_scripts()  # gone after a SCRIPT FLUSH or a restart; NOSCRIPT means it did not run
        return await self.call(b"EVALSHA", script.sha, len(keys), *keys, *args)

    # --- channels --------------------------------------------------------------------------
    async def send(self, channel: str, body: bytes, expiry_ms: int, capacity: int,
                   after_write: Callable[[], None] | None = None) -> bool:
        """Queue ``body``; False if the channel's capacity key is full.

        ``after_write`` runs once the script is queued on the connection: a pop queued after
        that on the same connection is executed after the push, so it finds the message.
        """
        keys = self.keys
        key = keys.capacity_key(channel)
        return bool(await self.run(SEND, [keys.queue(channel), keys.count(key), keys.bell(key)],
                                   [expiry_ms, capacity, body], after_write))

    async def start_pop(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]]:
        """Queue a pop of up to ``wanted[channel]`` unexpired messages of each channel:
        (its reply's future, the channels), to read with ``copies.read_pop``."""
        wire = self._commands
        if wire is None or wire.closed:
            wire = await self._connect()
        return self._queue_pop(wire, capacity_key, wanted)

    def pop_now(self, capacity_key: str, wanted: dict[str, int]) -> tuple[asyncio.Future, list[str]] | None:
        """The same, queued without awaiting anything; None if the connection is not open."""
        wire = self._commands
        if wire is None or wire.closed:
            return None
        return self._queue_pop(wire, capacity_key, wanted)

    def _queue_pop(self, wire: Wire, capacity_key: str, wanted: dict[str, int]):
        keys = self.keys.pop_keys(capacity_key)
        return wire.call(pack(b"EVALSHA", POP.sha, len(keys), *keys, *scripts.pop_arguments(
            self.keys.queues_of(capacity_key), self.read_ahead(capacity_key), capacity_key, wanted))), list(wanted)

    def flushes_for(self, capacity_key: str) -> FlushWatch:
        """The flush watch of what this loop holds of ``capacity_key``: the shard's one (flushes.py)."""
        return self.flushes

    @staticmethod
    def read_ahead(capacity_key: str) -> int:
        """Messages a pop takes beyond what is wanted: for a process's channels, which only it receives."""
        return READ_AHEAD if is_process_specific(capacity_key) else 0

    def uncount(self, copy: Copy) -> None:
        """A receive took ``copy``, read ahead and still counted here: uncount it, written at once
        (a send queued after it on this connection finds the room). Not awaited; lost with the
        connection, it is owed, and written first on the next one (ids are never reused, so
        uncounting one twice is harmless)."""
        self._owe((b"ZREM", self.keys.count(copy.capacity_key), copy.message_id))

    def renew_credit(self, capacity_key: str) -> None:
        """This loop read the entries delivered to it so far (deliveries.py): GROUP_SEND may
        publish ``DELIVERY_CREDIT`` more (no count is that many). Owed as an uncount is."""
        self._owe((b"DEL", self.keys.taker_credit(capacity_key)))

    def _owe(self, command: tuple) -> None:
        """Write ``command`` at once, unawaited; lost with the connection (or written while none
        is open), it is written first on the next one. For commands that may run twice."""
        wire = self._commands
        if wire is None or wire.closed:
            self._owed.append(command)
            return
        wire.call(pack(*command)).add_done_callback(lambda reply: self._owed_if_lost(reply, command))

    def _owed_if_lost(self, reply: asyncio.Future, command: tuple) -> None:
        if not reply.cancelled() and isinstance(reply.exception(), TRANSIENT_ERRORS):
            self._owed.append(command)

    def _tell(self, *command) -> None:
        """Write ``command`` at once if the connection is open, not waiting for its reply."""
        wire = self._commands
        if wire is not None and not wire.closed:
            wire.call(pack(*command)).add_done_callback(_unheard)

    async def load_scripts(self) -> None:
        """Load every script again: the one recovery from NOSCRIPT, for sends and pops alike."""
        for script in SCRIPTS:
            await self.call(b"SCRIPT", b"LOAD", script.source)

    async def push_back(self, capacity_key: str, channel: str, entries: list[bytes], ttl_ms: int) -> None:
        await self.run(PUSH_BACK, [self.keys.count(capacity_key), self.keys.bell(capacity_key),
                                   self.keys.queue(channel)], [ttl_ms, *entries])

    # --- groups -----------------------------------------------------------------------------
    def _membership_keys(self, group: str, channel: str) -> tuple[list[str], str]:
        """(the keys GROUP_ADD and GROUP_DISCARD touch for ``channel`` in ``group``, its process key
        or '' for a normal channel): a process's members are listed per process (group_scripts.py)."""
        keys = self.keys
        listed = [keys.group_members(group), keys.group_capacities(group)]
        process = keys.capacity_key(channel)
        if process == channel:
            return listed, ""
        return [*listed, keys.process_members_stem(group) + process, keys.roster_stem(group) + process], process

    def _group_add_call(self, group: str, channel: str, group_expiry_ms: int, capacity: int) -> tuple[list, list]:
        """GROUP_ADD's keys and arguments."""
        keys, process = self._membership_keys(group, channel)
        return keys, [channel, group_expiry_ms, capacity, self.keys.process_members_stem(group),
                      self.keys.roster_stem(group), process]

    async def group_add(self, group: str, channel: str, group_expiry_ms: int, capacity: int) -> None:
        await self.run(GROUP_ADD, *self._group_add_call(group, channel, group_expiry_ms, capacity))

    async def group_discard(self, group: str, channel: str) -> None:
        keys, process = self._membership_keys(group, channel)
        await self.run(GROUP_DISCARD, keys, [channel, process])

    async def group_send(self, group: str, body: bytes, expiry_ms: int, capacity: int,
                         after_write: Callable[[], None] | None = None, held: dict[str, int] | None = None,
                         own: Iterable[str] = ()) -> int:
        """Push to every member on this shard; returns how many missed it, being full. ``held``:
        capacity key -> group copies this loop holds for it (copies.py), which count against it;
        ``own``: the process keys this loop takes deliveries of (deliveries.py): not delivered to."""
        keys = self.keys
        return await self.run(GROUP_SEND, [keys.group_members(group), keys.group_capacities(group)],
                              [keys.prefix, expiry_ms, capacity, body, keys.process_members_stem(group),
                               keys.roster_stem(group), keys.flush_epoch, ",".join(own),
                               *(arg for key, count in (held or {}).items() for arg in (key, count))],
                              after_write)

    # --- statistics -------------------------------------------------------------------------
    async def channels(self) -> list[str]:
        """Every channel of this prefix with a queue on this shard."""
        start = len(self.keys.queue(""))
        found: list[str] = []
        cursor = b"0"
        while True:
            cursor, names = await self.call(b"SCAN", cursor, b"MATCH", self.keys.queue_pattern, b"COUNT", _SCAN_BATCH)
            found.extend(name.decode()[start:] for name in names)
            if cursor == b"0":
                return found

    async def waiting(self, channels: list[str]) -> tuple[int, list[tuple[int, int]]]:
        """(the server's time in ms, [(messages waiting, expiry stamp of the oldest), ...])."""
        if not channels:
            return 0, []
        reply = await self.run(STATS, [self.keys.queue(channel) for channel in channels],
                               [arg for channel in channels for arg in self.keys.inbox_of(channel)])
        return int(reply[0]), [(int(reply[i]), int(reply[i + 1])) for i in range(1, len(reply), 2)]

    def connection_state(self) -> ConnectionState:
        wire = self._commands
        if wire is None:
            return ConnectionState.NOT_CONNECTED
        return ConnectionState.LOST if wire.closed else ConnectionState.CONNECTED

    # --- whole shard ------------------------------------------------------------------------
    async def flush(self) -> None:
        """Delete this prefix's messages and groups, and nothing else.

        Bell counters go too: one made anew starts at the server's time in µs, above any id
        a receiver saw before. Then a new flush epoch is set and told to every process, which
        drops what it holds from pops before it (flushes.py); this loop at once.
        """
        cursor = b"0"
        while True:
            cursor, found = await self.call(b"SCAN", cursor, b"MATCH", self.keys.pattern, b"COUNT", _SCAN_BATCH)
            doomed = found
            if doomed:
                await self.call(b"UNLINK", *doomed)
            if cursor == b"0":
                break
        await self.flushes.announce(lambda: self.run(FLUSHED, [self.keys.flush_epoch], []))

    async def aclose(self) -> None:
        self._closed = True
        self.flushes.close()
        if self._commands is not None:
            self._commands.close()
        self._commands = None
        self.bells.close()
        await close_pool(self._pool)
