"""FLUSH-1: flushes that leave something behind.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


@breaks("FLUSH-1")
class FlushStrandsBlockedReceivers(InMemoryChannelLayer):
    """FLUSH-1: flush forgets the waiting receives, so they never wake again."""

    async def _flush(self):
        await super()._flush()
        with self._lock:
            self._waiters.clear()


@breaks("FLUSH-1")
class FlushKeepsGroups(InMemoryChannelLayer):
    """FLUSH-1: flush drops messages but leaves group memberships in place."""

    async def _flush(self):
        with self._lock:
            self._queues.clear()
            self._process_channels.clear()
