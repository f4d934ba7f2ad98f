"""A deliberately broken layer that only a sequence of operations exposes (for MODEL-1's own test).

Every single-rule test passes on it: FIFO holds, capacity holds, ChannelFull is raised. Only
after a ChannelFull does the next receive on that channel hand out the newest message
instead of the oldest.
"""

from __future__ import annotations

from reference_layers.base import ChannelFull
from reference_layers.inmemory import InMemoryChannelLayer


class ReordersAfterFull(InMemoryChannelLayer):
    """The in-memory layer, except that a refused send makes the next receive jump the queue."""

    def __init__(self, **config):
        super().__init__(**config)
        self._newest_first: set[str] = set()

    async def _send(self, channel: str, data: bytes) -> None:
        try:
            await super()._send(channel, data)
        except ChannelFull:
            self._newest_first.add(channel)
            raise

    def _pop(self, channel: str) -> bytes | None:
        with self._lock:
            queue = self._queues.get(channel)
            if queue and channel in self._newest_first:
                self._newest_first.discard(channel)
                queue.rotate(1)  # the newest message moves to the front
        return super()._pop(channel)
