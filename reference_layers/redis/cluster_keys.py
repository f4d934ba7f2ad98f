"""Key names in a Redis Cluster: hash tags put every key one script touches in one slot.

For prefix P, channel C, its capacity key K and group G:

- ``P:{K}:q:C`` C's messages, ``P:{K}:n`` K's count, ``P:{K}:b`` K's bell (and its shard channel),
  ``P:{K}:i`` K's inbox of group copies, ``P:{K}:e`` K's flush epoch (cluster_flushes.py):
  all of a send, a pop and a push-back in K's slot, so each stays one script on one node;
- ``P:{g:G}:g`` and ``P:{g:G}:gc`` group G's members and their capacities, in G's slot.

The layout inside each key is the one scripts.py describes.
"""

from __future__ import annotations

from ..core.errors import LayerConfigError
from .keys import KeySpace

QUEUE_MARK = "}:q:"


class ClusterKeySpace(KeySpace):
    def __init__(self, prefix: str):
        if "{" in prefix or "}" in prefix:
            raise LayerConfigError(f"prefix {prefix!r} has a brace: in a Redis Cluster it would change the hash "
                                   "slots of the layer's keys")
        super().__init__(prefix)
        self.queue_pattern = self.pattern[:-1] + "{*" + QUEUE_MARK + "*"

    def queue(self, channel: str) -> str:
        return f"{self.prefix}{{{self.capacity_key(channel)}{QUEUE_MARK}{channel}"

    def queues_of(self, capacity_key: str) -> str:
        return f"{self.prefix}{{{capacity_key}{QUEUE_MARK}{capacity_key}"

    def inbox(self, capacity_key: str) -> str:
        return f"{self.prefix}{{{capacity_key}}}:i"

    def epoch(self, capacity_key: str) -> str:
        """In K's slot (a pop reads it), moved on by a flush for a process key (cluster_flushes.py)."""
        return f"{self.prefix}{{{capacity_key}}}:e"

    def count(self, capacity_key: str) -> str:
        return f"{self.prefix}{{{capacity_key}}}:n"

    def bell(self, capacity_key: str) -> str:
        return f"{self.prefix}{{{capacity_key}}}:b"

    def group_members(self, group: str) -> str:
        return f"{self.prefix}{{g:{group}}}:g"

    def group_capacities(self, group: str) -> str:
        return f"{self.prefix}{{g:{group}}}:gc"

    def channel_of_queue(self, key: str) -> str:
        """The channel whose queue ``key`` is (a name SCAN found with ``queue_pattern``)."""
        return key.partition(QUEUE_MARK)[2]
