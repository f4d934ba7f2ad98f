"""``LayerCore``: the public channel layer API with every check made once, before the layer's step.

A layer subclasses it and fills in the storage; it then receives only valid names and
already-encoded bytes, so the four layers refuse exactly the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .capacity import CapacityRules
from .codec import DEFAULT_MESSAGE_SIZE_LIMIT, MessageCodec
from .config import positive_int, positive_int_or_none, positive_number
from .errors import ForeignProcessChannel
from .names import ChannelNamer, CheckedChannels, check_channel_name, check_group_name, non_local_name


class LayerCore:
    """The public channel layer API with every check done once; layers fill in the storage.

    Subclasses implement ``_send(channel, data)``, ``_receive(channel) -> bytes``,
    ``_group_add``, ``_group_discard``, ``_group_send(group, data)``, ``_flush`` and
    ``_close``. They receive only valid names and already-encoded bytes.
    """

    extensions = ["groups", "flush"]

    def __init__(self, *, expiry: float = 60, group_expiry: float = 86400, capacity: int = 100,
                 channel_capacity: Any = None, message_size_limit: int | None = DEFAULT_MESSAGE_SIZE_LIMIT,
                 symmetric_encryption_keys: Iterable[str | bytes] | None = None) -> None:
        self.expiry = positive_number("expiry", expiry)
        self.group_expiry = positive_number("group_expiry", group_expiry)
        self.capacity = positive_int("capacity", capacity)
        self.capacities = CapacityRules(capacity, channel_capacity)
        self.message_size_limit = positive_int_or_none("message_size_limit", message_size_limit)
        self.codec = MessageCodec(message_size_limit, symmetric_encryption_keys)
        self.namer = ChannelNamer()
        self.client_prefix = self.namer.client_prefix
        self._receivable = CheckedChannels()  # channel -> what the layer found for it (receivable_as)

    # Django Channels' BaseChannelLayer offers these; user code sometimes calls them. Like
    # Django's, the valid_* and require_valid_* ones raise TypeError for a bad name.
    def valid_channel_name(self, name: Any, receive: bool = False) -> bool:
        return bool(check_channel_name(name))

    def valid_group_name(self, name: Any) -> bool:
        return bool(check_group_name(name))

    def require_valid_channel_name(self, name: Any, receive: bool = False) -> bool:
        return bool(check_channel_name(name))

    def require_valid_group_name(self, name: Any) -> bool:
        return bool(check_group_name(name))

    def valid_channel_names(self, names: Any, receive: bool = False) -> bool:
        if not isinstance(names, list):
            raise TypeError(f"channel names must be a list, not {type(names).__name__}")
        return all(check_channel_name(name) for name in names)

    non_local_name = staticmethod(non_local_name)

    def check_receivable(self, channel: str) -> None:
        """Raise ForeignProcessChannel for a process-specific name this object did not make."""
        if not self.namer.made(channel):
            raise ForeignProcessChannel(
                f"cannot receive on {channel!r}: it is process-specific and this layer object's "
                f"new_channel() did not make it (its names have '.{self.client_prefix}!'), "
                "so no message sent to it would ever reach this receive")

    def receivable_as(self, channel: Any, find: Callable[[str], str]) -> str:
        """``check_receivable(check_channel_name(channel))``, then ``find(channel)`` (its capacity
        key, its queue), both remembered: a fan-out's members call receive() again and again,
        and every call after the first is one lookup."""
        found = self._receivable.get(channel) if type(channel) is str else None
        if found is None:
            self.check_receivable(check_channel_name(channel))
            found = find(channel)
            self._receivable.remember(channel, found)
        return found

    def get_capacity(self, channel: str) -> int:
        return self.capacities.for_channel(channel)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``; raises ChannelFull if it holds its capacity."""
        check_channel_name(channel)
        await self._send(channel, self.codec.encode(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for, and return, the next message on ``channel``."""
        check_channel_name(channel)
        self.check_receivable(channel)
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

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
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
