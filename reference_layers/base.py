"""What every reference layer shares: name rules, message checks, the wire codec, config
parsing, capacity lookup, per-event-loop state and the exceptions.

Each rule lives here once, so the four layers refuse exactly the same inputs, and code that
passes on the in-memory layer does not fail later on Redis.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import secrets
import sys
import threading
import weakref
from typing import Any, Awaitable, Callable, Generic, Iterable, TypeVar

import msgpack

try:  # catchable as channels.exceptions.ChannelFull when Django Channels is installed
    from channels.exceptions import ChannelFull as _ChannelFullBase
except ImportError:  # pragma: no cover - channels is optional for the layers
    _ChannelFullBase = Exception


class ChannelFull(_ChannelFullBase):
    """The channel already holds its capacity of messages; nothing was sent."""


class MessageTooLarge(ValueError):
    """The encoded message is larger than the layer's ``message_size_limit``; nothing was sent."""


class UnserialisableMessage(TypeError):
    """The message holds a value the wire cannot carry (set, object, datetime, huge int, ...)."""


class LayerConfigError(ValueError):
    """A ``CHANNEL_LAYERS`` CONFIG value is wrong; raised when the layer is built."""


# --- names ---------------------------------------------------------------------------------

MAX_NAME_LENGTH = 99
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9\-_.]+(![A-Za-z0-9\-_.]*)?\Z")
_GROUP_NAME = re.compile(r"[A-Za-z0-9\-_.]+\Z")


def check_channel_name(name: Any) -> str:
    """Return ``name`` if it is a valid channel name, else raise TypeError saying why."""
    if type(name) is str and name in _VALID_CHANNELS:  # checked before: a set lookup, no regex
        return name
    if not isinstance(name, str):
        raise TypeError(f"channel name must be a str, not {type(name).__name__}: {name!r}")
    if not 0 < len(name) <= MAX_NAME_LENGTH or not _CHANNEL_NAME.match(name):
        raise TypeError(
            f"invalid channel name {name!r}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits, "
            "'-', '_', '.' and at most one '!'")
    if type(name) is str:
        if len(_VALID_CHANNELS) >= 10_000:
            _VALID_CHANNELS.clear()
        _VALID_CHANNELS.add(name)
    return name


_VALID_CHANNELS: set[str] = set()  # names that passed (every send and receive checks its name)


def check_group_name(name: Any) -> str:
    """Return ``name`` if it is a valid group name, else raise TypeError saying why."""
    if not isinstance(name, str):
        raise TypeError(f"group name must be a str, not {type(name).__name__}: {name!r}")
    if not 0 < len(name) <= MAX_NAME_LENGTH or not _GROUP_NAME.match(name):
        raise TypeError(
            f"invalid group name {name!r}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits, '-', '_', '.'")
    return name


def non_local_name(channel: str) -> str:
    """``'p.abc!x'`` -> ``'p.abc!'``: the part all of one process's channels share."""
    bang = channel.find("!")
    return channel if bang < 0 else channel[: bang + 1]


def is_process_specific(channel: str) -> bool:
    return "!" in channel


class ChannelNamer:
    """Makes process-specific channel names that never repeat, in any process.

    Names come from ``secrets`` (the OS's randomness), so ``random.seed()`` in user code, or a
    forked child, cannot make two processes hand out the same name.
    """

    def __init__(self):
        self.client_prefix = secrets.token_hex(8)

    def new_channel(self, prefix: str = "specific") -> str:
        if not isinstance(prefix, str) or not _GROUP_NAME.match(prefix):
            raise TypeError(f"new_channel prefix must be a valid name without '!', got {prefix!r}")
        name = f"{prefix}.{self.client_prefix}!{secrets.token_hex(8)}"
        return check_channel_name(name)


# --- messages ----------------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**64 - 1  # msgpack carries int64 and uint64
MAX_NESTING = 100
DEFAULT_MESSAGE_SIZE_LIMIT = 8 * 1024 * 1024
_SCALARS = (str, bytes, bool, float, type(None))


def check_message(message: Any) -> bool:
    """Raise TypeError unless ``message`` is a dict the wire can carry exactly.

    Returns True if it is a flat ``dict`` (not a subclass) of plain values: packing such a
    message runs no Python code, which ``MessageCodec`` relies on to share one packer.
    """
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, not {type(message).__name__}: {message!r:.80}")
    for key, value in message.items():  # fast path, no recursion: a flat dict of plain values
        if type(key) is not str or (type(value) not in _PLAIN and not (
                type(value) is int and INT64_MIN <= value <= INT64_MAX)):
            break
    else:
        return type(message) is dict
    _check_value(message, "message", 0)
    return False


_PLAIN = frozenset((str, bytes, bool, float, type(None)))


def _check_value(value: Any, path: str, depth: int) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise UnserialisableMessage(f"{path} = {value} does not fit in 64 bits")
        return
    if depth >= MAX_NESTING:
        raise UnserialisableMessage(f"{path} is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnserialisableMessage(f"{path} has a key of type {type(key).__name__} ({key!r}); keys must be str")
            _check_value(item, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, bytearray):
        return
    raise UnserialisableMessage(
        f"{path} is a {type(value).__name__} ({value!r:.60}); a channel message may hold only "
        "dict, list, tuple, str, bytes, int, float, bool and None")


_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()  # False on a free-threaded build


class MessageCodec:
    """Message dict <-> bytes on the wire: checks, msgpack, optional encryption, size limit."""

    def __init__(self, size_limit: int | None = DEFAULT_MESSAGE_SIZE_LIMIT,
                 encryption_keys: Iterable[str | bytes] | None = None):
        self.size_limit = size_limit
        self._crypter = _make_crypter(encryption_keys) if encryption_keys else None
        # msgpack.packb builds a Packer per call (most of its cost for a small message). One
        # kept Packer is shared by every thread, but only for flat plain dicts: packing those
        # runs no Python code, so under the GIL no other thread can enter it halfway.
        self._pack = msgpack.Packer(use_bin_type=True).pack if _GIL else None

    def encode(self, message: dict) -> bytes:
        if check_message(message) and self._pack is not None:
            data = self._pack(message)
        else:
            data = msgpack.packb(message, use_bin_type=True)
        if self.size_limit is not None and len(data) > self.size_limit:
            raise MessageTooLarge(
                f"message is {len(data)} bytes encoded, over the layer's limit of {self.size_limit} bytes")
        if self._crypter is not None:
            data = self._crypter.encrypt(data)
        return data

    def decode(self, data: bytes) -> dict:
        if self._crypter is not None:
            data = self._crypter.decrypt(data)
        return msgpack.unpackb(data, raw=False)


def _make_crypter(keys):
    """A MultiFernet: the first key encrypts, every key decrypts (so keys can be rotated)."""
    if isinstance(keys, (str, bytes)):
        raise LayerConfigError("symmetric_encryption_keys must be a list of keys, not a single key")
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:  # pragma: no cover
        raise LayerConfigError("symmetric_encryption_keys needs the 'cryptography' package") from None
    import base64
    import hashlib

    fernets = []
    for key in keys:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        # Any secret string works as a key: derive the 32 bytes Fernet wants from it.
        fernets.append(Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw).digest())))
    if not fernets:
        raise LayerConfigError("symmetric_encryption_keys is empty")
    return MultiFernet(fernets)


# --- configuration --------------------------------------------------------------------------

def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise LayerConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LayerConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


class CapacityRules:
    """Per-channel capacity: ``channel_capacity`` patterns first (first match wins), else default.

    Patterns are glob strings or compiled regexes, matched against the full channel name as
    in Django Channels' documentation; a process-specific channel's messages then count
    against the capacity of its non-local part, shared by all of that process's channels.
    """

    def __init__(self, default: int, channel_capacity=None):
        self.default = _positive_int("capacity", default)
        self._rules: list[tuple[re.Pattern, int]] = []
        if channel_capacity is None:
            return
        items = channel_capacity.items() if isinstance(channel_capacity, dict) else channel_capacity
        try:
            items = list(items)
        except TypeError:
            raise LayerConfigError(f"channel_capacity must map patterns to capacities, got {channel_capacity!r}") from None
        for entry in items:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                raise LayerConfigError(f"channel_capacity entry must be (pattern, capacity), got {entry!r}")
            pattern, capacity = entry
            if isinstance(pattern, str):
                pattern = re.compile(fnmatch.translate(pattern))
            elif not isinstance(pattern, re.Pattern):
                raise LayerConfigError(f"channel_capacity pattern must be a glob str or compiled regex, got {pattern!r}")
            self._rules.append((pattern, _positive_int(f"channel_capacity[{pattern.pattern!r}]", capacity)))
        self._cache: dict[str, int] = {}

    def for_channel(self, channel: str) -> int:
        if not self._rules:
            return self.default
        try:
            return self._cache[channel]
        except KeyError:
            pass
        capacity = next((cap for pattern, cap in self._rules if pattern.match(channel)), self.default)
        if len(self._cache) < 10_000:
            self._cache[channel] = capacity
        return capacity


class LayerCore:
    """The public channel layer API with every check done once; layers fill in the storage.

    Subclasses implement ``_send(channel, data)``, ``_receive(channel) -> bytes``,
    ``_group_add``, ``_group_discard``, ``_group_send(group, data)``, ``_flush`` and
    ``_close``. They receive only valid names and already-encoded bytes.
    """

    extensions = ["groups", "flush"]

    def __init__(self, *, expiry=60, group_expiry=86400, capacity=100, channel_capacity=None,
                 message_size_limit=DEFAULT_MESSAGE_SIZE_LIMIT, symmetric_encryption_keys=None):
        self.expiry = _positive_number("expiry", expiry)
        self.group_expiry = _positive_number("group_expiry", group_expiry)
        self.capacity = _positive_int("capacity", capacity)
        self.capacities = CapacityRules(capacity, channel_capacity)
        if message_size_limit is not None:
            _positive_int("message_size_limit", message_size_limit)
        self.message_size_limit = message_size_limit
        self.codec = MessageCodec(message_size_limit, symmetric_encryption_keys)
        self.namer = ChannelNamer()
        self.client_prefix = self.namer.client_prefix

    # Django Channels' BaseChannelLayer offers these; user code sometimes calls them.
    def valid_channel_name(self, name, receive=False):
        return bool(check_channel_name(name))

    def valid_group_name(self, name):
        return bool(check_group_name(name))

    def get_capacity(self, channel):
        return self.capacities.for_channel(channel)

    async def send(self, channel: str, message: dict) -> None:
        """Queue ``message`` on ``channel``; raises ChannelFull if it holds its capacity."""
        check_channel_name(channel)
        await self._send(channel, self.codec.encode(message))

    async def receive(self, channel: str) -> dict:
        """Wait for, and return, the next message on ``channel``."""
        check_channel_name(channel)
        return self.codec.decode(await self._receive(channel))

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new process-specific channel name, unique across processes."""
        return self.namer.new_channel(prefix)

    async def group_add(self, group: str, channel: str) -> None:
        check_group_name(group)
        check_channel_name(channel)
        await self._group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        check_group_name(group)
        check_channel_name(channel)
        await self._group_discard(group, channel)

    async def group_send(self, group: str, message: dict) -> None:
        """Send to every member; a member that is full misses this message (no ChannelFull)."""
        check_group_name(group)
        await self._group_send(group, self.codec.encode(message))

    async def flush(self) -> None:
        """Drop every message and group of this layer."""
        await self._flush()

    async def close(self) -> None:
        """Release connections and other resources; the layer may be used again afterwards."""
        await self._close()

    # --- to implement --------------------------------------------------------------------
    async def _send(self, channel: str, data: bytes) -> None:
        raise NotImplementedError

    async def _receive(self, channel: str) -> bytes:
        raise NotImplementedError

    async def _group_add(self, group: str, channel: str) -> None:
        raise NotImplementedError

    async def _group_discard(self, group: str, channel: str) -> None:
        raise NotImplementedError

    async def _group_send(self, group: str, data: bytes) -> None:
        raise NotImplementedError

    async def _flush(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        pass


# --- per event loop ---------------------------------------------------------------------------

State = TypeVar("State")
_LOOP_HOOK = "_asgi_reference_layer_owners"


class PerLoop(Generic[State]):
    """One state (connections, tasks) per event loop, made on first use there.

    Connections belong to the loop that opened them, while a layer is called from several
    loops in turn (``asyncio.run`` twice, ``async_to_sync`` making a loop per call). Just
    before a loop closes, its state is closed on it (a close handshake needs the loop), so
    short-lived loops leave no socket behind.
    """

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], State],
                 close: Callable[[State], Awaitable[None]]):
        self._make = make
        self._close = close
        self._states: dict[asyncio.AbstractEventLoop, State] = {}
        self._lock = threading.Lock()

    def current(self) -> State:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is not None:
            return state
        with self._lock:
            for old in [old for old in self._states if old.is_closed()]:
                del self._states[old]  # closed without our hook (a loop type we cannot patch)
            state = self._states[loop] = self._make(loop)
        _close_before_loop_closes(loop, self)
        return state

    def existing(self) -> State | None:
        """This loop's state if it has one (without making one)."""
        return self._states.get(asyncio.get_running_loop())

    def pop_current(self) -> State | None:
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._states.pop(loop, None)

    def pop_all(self) -> list[tuple[asyncio.AbstractEventLoop, State]]:
        with self._lock:
            states, self._states = list(self._states.items()), {}
        return states

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called just before ``loop`` closes: close this loop's state on it while we still can."""
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None and not loop.is_running():
            try:
                loop.run_until_complete(self._close(state))
            except Exception:  # noqa: BLE001 - closing must never stop the loop from closing
                pass


def _close_before_loop_closes(loop: asyncio.AbstractEventLoop, owner: PerLoop) -> None:
    owners = getattr(loop, _LOOP_HOOK, None)
    if owners is None:
        owners = weakref.WeakSet()
        original_close = loop.close

        def close():
            for each in list(owners):
                each._release(loop)  # noqa: SLF001 - PerLoop releasing its own kind
            original_close()

        try:
            loop.close = close
            setattr(loop, _LOOP_HOOK, owners)
        except AttributeError:  # cannot patch this loop type: its state is dropped lazily
            return
    owners.add(owner)
