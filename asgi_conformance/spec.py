"""Kept so that imports written before the split keep working; new code imports the parts.

The ``requirement`` decorator and layer pools live in :mod:`asgi_conformance.runner`, the
words suite tests are written in in :mod:`asgi_conformance.vocabulary`, the run's settings in
:mod:`asgi_conformance.settings`.
"""

from __future__ import annotations

from .features import DECLARABLE_FEATURES, EXTENSION_FEATURES
from .runner import LayerPool, LayerToBuild, requirement
from .vocabulary import (
    any_channel,
    declared_size_limit,
    expect_message,
    expect_silence,
    fresh_channel,
    fresh_group,
    is_channel_full,
    offers,
    process_prefix_of,
    require,
)

__all__ = [
    "DECLARABLE_FEATURES", "EXTENSION_FEATURES", "LayerPool", "LayerToBuild", "any_channel",
    "declared_size_limit", "expect_message", "expect_silence", "fresh_channel", "fresh_group",
    "is_channel_full", "offers", "process_prefix_of", "require", "requirement",
]
