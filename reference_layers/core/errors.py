"""The exceptions every reference layer raises, defined once so all four raise the same ones.

``ChannelFull`` subclasses Django Channels' own when that is installed, so code that catches
``channels.exceptions.ChannelFull`` catches ours too.
"""

from __future__ import annotations

try:  # catchable as channels.exceptions.ChannelFull when Django Channels is installed
    from channels.exceptions import ChannelFull as _ChannelFullBase
except ImportError:  # pragma: no cover - channels is optional for the layers
    # With types-channels installed mypy sees a class here; without, Any: both are fine.
    _ChannelFullBase = Exception  # type: ignore[misc,assignment,unused-ignore]


class ChannelFull(_ChannelFullBase):
    """The channel already holds its capacity of messages; nothing was sent."""


class MessageTooLarge(ValueError):
    """The encoded message is larger than the layer's ``message_size_limit``; nothing was sent."""


class UnserialisableMessage(TypeError):
    """The message holds a value the wire cannot carry (set, object, datetime, huge int, ...)."""


class LayerConfigError(ValueError):
    """A ``CHANNEL_LAYERS`` CONFIG value is wrong; raised when the layer is built."""


class ForeignProcessChannel(ValueError):
    """A receive on a process-specific name this layer object's ``new_channel`` did not make.

    Only the object that made ``prefix.CLIENT!x`` receives on it, so such a receive could never
    be served: it fails at once instead of waiting for ever.
    """
