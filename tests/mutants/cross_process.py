"""XP-*: layers that keep every single-process rule and break one cross-process rule.

Each class is the IPC reference layer (shared memory, no server) with state one process keeps
that the others cannot see, or with one step between processes done wrong: the ways real
layers break these rules. Inside one process every one of them behaves: the suite's
single-process areas PASS; only a second process (the suite's peers, which build the same
class from its dotted path and config) can tell.

They use only the IPC layer's public methods, so they outlive changes to its internals.
State "this process keeps" lives in module globals keyed by the layer's prefix: every
instance in one process shares it, as a process's own cache or registry would be shared.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import tempfile
import time
from collections import Counter, defaultdict, deque
from pathlib import Path

from reference_layers.base import (
    ChannelFull,
    MessageTooLarge,  # noqa: F401 - the suite looks it up in the layer's module (MSG-5)
    check_channel_name,
    check_group_name,
    is_process_specific,
    non_local_name,
)
from reference_layers.inmemory import InMemoryChannelLayer
from reference_layers.ipc import IPCChannelLayer
from tests.mutants.registry import breaks

# Single-process areas a cross-process mutant must still pass beyond its control requirement:
# the ones its change touches.
MESSAGES_AND_CHANNELS = ("MSG", "CHAN", "CAP")
GROUPS_AND_FLUSH = ("GRP", "FLUSH", "EXP-3")

# new_channel() names end their non-local part with the making instance's client prefix.
_MADE_BY = re.compile(r"\.([0-9a-f]{16})!$")

PROCESS_TOKEN = secrets.token_hex(8)  # this process's identity, as a per-process prefix would be


def _client_of(channel: str) -> str | None:
    """The client prefix of the instance whose new_channel() made ``channel``, if it was one."""
    found = _MADE_BY.search(non_local_name(channel))
    return found.group(1) if found else None


def _try_receive(layer: IPCChannelLayer, channel: str) -> dict | None:
    """The next message of ``channel`` if one waits, else None, without waiting.

    The IPC layer's receive returns without ever suspending when a message waits; one step of
    its coroutine tells which case this is, and closing a suspended one undoes its waiting.
    """
    step = IPCChannelLayer.receive(layer, channel)
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    return None


# --- XP-1 ----------------------------------------------------------------------------------

_CLIENTS_HERE: set[str] = set()  # client prefixes of the instances made in this process


class _KnowsItsOwnInstances(IPCChannelLayer):
    def __init__(self, **config):
        super().__init__(**config)
        _CLIENTS_HERE.add(self.client_prefix)

    @staticmethod
    def _of_another_process(channel: str) -> bool:
        client = _client_of(channel) if is_process_specific(channel) else None
        return client is not None and client not in _CLIENTS_HERE


@breaks("XP-1", also=("XP-4", "XP-5"), keeps=MESSAGES_AND_CHANNELS)
class DeliversProcessChannelsOnlyLocally(_KnowsItsOwnInstances):
    """A send to a process-specific channel that no instance of this process made is dropped,
    as by a layer that keeps a process-local registry of reply channels and treats an unknown
    one as a stale reply."""

    async def send(self, channel, message):
        if self._of_another_process(check_channel_name(channel)):
            self.codec.encode(message)  # still refuses what it must refuse
            return
        await super().send(channel, message)


@breaks("XP-1", also=("XP-4", "XP-5"), keeps=MESSAGES_AND_CHANNELS)
class SendsTwiceToAnotherProcess(_KnowsItsOwnInstances):
    """A send to another process's channel goes out twice, as from a layer that retries a
    cross-process delivery it cannot confirm; within one process every send goes out once."""

    async def send(self, channel, message):
        await super().send(channel, message)
        if self._of_another_process(channel):
            await super().send(channel, message)


# --- XP-2 ----------------------------------------------------------------------------------

_MEMBERSHIPS: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)  # prefix -> group -> channel -> ends


@breaks("XP-2", also=("XP-5",), keeps=GROUPS_AND_FLUSH)
class GroupsKeptInProcessMemory(IPCChannelLayer):
    """Group memberships live in this process's memory: a group_send reaches only the members
    this process added (messages still cross processes)."""

    @property
    def _groups(self) -> dict[str, dict[str, float]]:
        return _MEMBERSHIPS[self.prefix]

    async def group_add(self, group, channel):
        check_group_name(group)
        check_channel_name(channel)
        self._groups.setdefault(group, {})[channel] = time.monotonic() + self.group_expiry

    async def group_discard(self, group, channel):
        check_group_name(group)
        check_channel_name(channel)
        self._groups.get(group, {}).pop(channel, None)

    async def group_send(self, group, message):
        check_group_name(group)
        self.codec.encode(message)  # refuses an oversize or unserialisable message (GRP-5)
        now = time.monotonic()
        for channel, ends in list(self._groups.get(group, {}).items()):
            if ends <= now:
                continue
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass  # CAP-5: a full member misses the message

    async def flush(self):
        self._groups.clear()
        await super().flush()


def _scoped(group: str) -> str:
    return "g" + hashlib.sha256(f"{PROCESS_TOKEN}.{group}".encode()).hexdigest()[:40]


@breaks("XP-2", also=("XP-5",), keeps=GROUPS_AND_FLUSH)
class GroupNamesScopedToTheProcess(IPCChannelLayer):
    """Groups are stored under a name derived from a per-process prefix, so every process has
    groups of its own: shared storage, but no process finds another's members."""

    async def group_add(self, group, channel):
        await super().group_add(_scoped(check_group_name(group)), channel)

    async def group_discard(self, group, channel):
        await super().group_discard(_scoped(check_group_name(group)), channel)

    async def group_send(self, group, message):
        await super().group_send(_scoped(check_group_name(group)), message)


# --- XP-3 ----------------------------------------------------------------------------------

_LOCAL_LAYERS: dict[str, InMemoryChannelLayer] = {}
_LOCAL_CONFIG_KEYS = ("expiry", "group_expiry", "capacity", "channel_capacity", "message_size_limit")


@breaks("XP-3", also=("XP-4", "XP-5"), keeps=MESSAGES_AND_CHANNELS)
class NormalChannelsKeptInProcessMemory(IPCChannelLayer):
    """Normal channels (no '!'), and their group memberships, are kept in this process's memory;
    process-specific channels and their memberships use shared memory. A worker in another process never sees a normal channel's
    messages."""

    def __init__(self, **config):
        super().__init__(**config)
        local = {key: config[key] for key in _LOCAL_CONFIG_KEYS if key in config}
        self._local = _LOCAL_LAYERS.setdefault(repr(sorted(config.items())), InMemoryChannelLayer(**local))

    async def send(self, channel, message):
        if is_process_specific(check_channel_name(channel)):
            await super().send(channel, message)
        else:
            await self._local.send(channel, message)

    async def receive(self, channel):
        if is_process_specific(check_channel_name(channel)):
            return await super().receive(channel)
        return await self._local.receive(channel)

    async def group_add(self, group, channel):
        if is_process_specific(check_channel_name(channel)):
            await super().group_add(group, channel)
        else:
            await self._local.group_add(group, channel)

    async def group_discard(self, group, channel):
        await super().group_discard(group, channel)
        await self._local.group_discard(group, channel)

    async def group_send(self, group, message):
        await super().group_send(group, message)
        await self._local.group_send(group, message)

    async def flush(self):
        await self._local.flush()
        await super().flush()


_STAMP = "__mutant_sent_as"
_SENT_HERE: Counter = Counter()  # (prefix, channel) -> sends from this process
_SEEN_HERE: dict[tuple[str, str], set[int]] = defaultdict(set)  # (prefix, channel) -> stamps received


@breaks("XP-3", keeps=MESSAGES_AND_CHANNELS)
class DeduplicatesByAPerProcessCounter(IPCChannelLayer):
    """Each message carries an id to drop redelivered copies, but the id is a counter kept per
    process: the first message of every sending process has the same id, and the receiver
    drops all but one of them."""

    async def send(self, channel, message):
        if not isinstance(message, dict):
            await super().send(channel, message)  # refused there (MSG-1)
            return
        key = (self.prefix, check_channel_name(channel))
        stamp = _SENT_HERE[key]
        await super().send(channel, {**message, _STAMP: stamp})
        _SENT_HERE[key] += 1

    async def receive(self, channel):
        seen = _SEEN_HERE[(self.prefix, check_channel_name(channel))]
        while True:
            message = await super().receive(channel)
            stamp = message.pop(_STAMP, None)
            if stamp is None:
                return message  # a group_send's copy carries no stamp
            if stamp not in seen:
                seen.add(stamp)
                return message


# --- XP-4 ----------------------------------------------------------------------------------

_SENT_AT = "__mutant_sent_at"
_FLUSHED_HERE_AT: dict[str, float] = defaultdict(float)  # prefix -> time of this process's latest flush
_ADDED_HERE: dict[str, set[tuple[str, str]]] = defaultdict(set)  # prefix -> (group, channel)


@breaks("XP-4", keeps=GROUPS_AND_FLUSH)
class FlushKeptAsAProcessLocalMark(IPCChannelLayer):
    """flush() deletes nothing: it notes the time in this process, whose receives then drop the
    messages sent before it, and discards the memberships this process added. Other processes
    never learn of it."""

    async def send(self, channel, message):
        await super().send(channel, _stamped(message))

    async def receive(self, channel):
        while True:
            message = await super().receive(channel)
            if message.pop(_SENT_AT, math.inf) >= _FLUSHED_HERE_AT[self.prefix]:
                return message

    async def group_add(self, group, channel):
        await super().group_add(group, channel)
        _ADDED_HERE[self.prefix].add((group, channel))

    async def group_send(self, group, message):
        await super().group_send(group, _stamped(message))

    async def flush(self):
        _FLUSHED_HERE_AT[self.prefix] = time.time()
        added, _ADDED_HERE[self.prefix] = _ADDED_HERE[self.prefix], set()
        for group, channel in added:
            await super().group_discard(group, channel)


def _stamped(message):
    return {**message, _SENT_AT: time.time()} if isinstance(message, dict) else message


_READ_AHEAD: dict[str, dict[str, deque]] = defaultdict(lambda: defaultdict(deque))  # prefix -> channel -> messages


@breaks("XP-4", keeps=MESSAGES_AND_CHANNELS + GROUPS_AND_FLUSH)
class ReadsAheadIntoProcessMemory(IPCChannelLayer):
    """A receive also takes the messages waiting on this process's other channels into a buffer
    in process memory (one round trip serves them all, as channels_redis does); flush() empties
    this process's buffer only, so another process's flush leaves what was read ahead."""

    def __init__(self, **config):
        super().__init__(**config)
        self._made: set[str] = set()
        self._waiting: Counter = Counter()

    @property
    def _buffer(self) -> dict[str, deque]:
        return _READ_AHEAD[self.prefix]

    async def new_channel(self, prefix="specific"):
        channel = await super().new_channel(prefix)
        self._made.add(channel)
        return channel

    async def receive(self, channel):
        buffered = self._buffer.get(check_channel_name(channel))
        if buffered:
            return buffered.popleft()
        self._waiting[channel] += 1
        try:
            message = await super().receive(channel)
        finally:
            self._waiting[channel] -= 1
        for sibling in self._made - {channel}:
            if not self._waiting[sibling]:  # a receive waiting there would never see the buffer
                ahead = _try_receive(self, sibling)
                if ahead is not None:
                    self._buffer[sibling].append(ahead)
        return message

    async def flush(self):
        self._buffer.clear()
        await super().flush()


# --- XP-5 ----------------------------------------------------------------------------------

def files_of(prefix: str) -> Path:
    """Where the mutants below keep what every process of one prefix must see (the caller
    removes it after the run)."""
    return Path(tempfile.gettempdir()) / f"asgi-conformance-mutants.{prefix}"


def _lease_file(prefix: str, *parts: str) -> Path:
    folder = files_of(prefix)
    folder.mkdir(exist_ok=True)
    return folder / hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@breaks("XP-5", keeps=MESSAGES_AND_CHANNELS)
class ConsumerLeaseOutlivesItsProcess(IPCChannelLayer):
    """The first process to receive from a normal channel takes a lease on it (a file naming its
    pid) and gives it back in close(); no one checks that the holder still lives, so a process
    killed with SIGKILL keeps the channel from every other receiver."""

    def __init__(self, **config):
        super().__init__(**config)
        self._held: set[Path] = set()

    def _take_lease(self, channel: str) -> None:
        lease = _lease_file(self.prefix, channel)
        if lease in self._held:
            return
        try:
            descriptor = os.open(lease, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            holder = int(lease.read_text() or 0)
            if holder != os.getpid():
                raise RuntimeError(f"channel {channel!r} is leased to process {holder}") from None
        else:
            os.write(descriptor, str(os.getpid()).encode())
            os.close(descriptor)
        self._held.add(lease)

    async def receive(self, channel):
        if not is_process_specific(check_channel_name(channel)):
            self._take_lease(channel)
        return await super().receive(channel)

    async def close(self):
        for lease in self._held:
            lease.unlink(missing_ok=True)
        self._held.clear()
        await super().close()


@breaks("XP-5", keeps=GROUPS_AND_FLUSH)
class GroupSendSignalsDeadMembers(IPCChannelLayer):
    """Before a group_send, every member's process is checked with ``kill(pid, 0)`` to prune the
    dead ones, but the check's ProcessLookupError escapes: a group that held a channel of a
    killed process refuses every later group_send."""

    def __init__(self, **config):
        super().__init__(**config)
        _lease_file(self.prefix, "pid", self.client_prefix).write_text(str(os.getpid()))

    async def group_add(self, group, channel):
        await super().group_add(group, channel)
        with _lease_file(self.prefix, "group", group).open("a") as members:
            members.write(channel + "\n")

    async def group_send(self, group, message):
        members = _lease_file(self.prefix, "group", check_group_name(group))
        for channel in members.read_text().split() if members.exists() else ():
            client = _client_of(channel)
            registered = _lease_file(self.prefix, "pid", client) if client else None
            if registered is not None and registered.exists():
                os.kill(int(registered.read_text()), 0)
        await super().group_send(group, message)
