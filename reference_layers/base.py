"""The names every reference layer shares, re-exported from ``reference_layers.core``.

Kept so ``from reference_layers.base import ChannelFull`` (user code, and layers written
before the split) keeps working. New code imports from the ``core`` module that does the job
(``reference_layers.core.errors``, ``.names``, ``.codec``, ...): see ``core/__init__.py``.
"""

from __future__ import annotations

from .core.capacity import CapacityRules
from .core.codec import DEFAULT_MESSAGE_SIZE_LIMIT, INT64_MAX, INT64_MIN, MAX_NESTING, MessageCodec, check_message
from .core.errors import ChannelFull, ForeignProcessChannel, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .core.layer_core import LayerCore
from .core.loops import PerLoop
from .core.names import (
    MAX_NAME_LENGTH,
    ChannelNamer,
    check_channel_name,
    check_group_name,
    is_process_specific,
    non_local_name,
)

__all__ = [
    "DEFAULT_MESSAGE_SIZE_LIMIT",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_NAME_LENGTH",
    "MAX_NESTING",
    "CapacityRules",
    "ChannelFull",
    "ChannelNamer",
    "ForeignProcessChannel",
    "LayerConfigError",
    "LayerCore",
    "MessageCodec",
    "MessageTooLarge",
    "PerLoop",
    "UnserialisableMessage",
    "check_channel_name",
    "check_group_name",
    "check_message",
    "is_process_specific",
    "non_local_name",
]
