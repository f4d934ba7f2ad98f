"""Consistent hashing over the shards, so that adding a shard moves only about 1/N of the keys.

Each shard owns many points ("virtual nodes") on a 64-bit ring; a key belongs to the first
point at or after its own hash. A new shard takes over only the arcs in front of its own
points, so a fifth shard added to four takes about a fifth of the keys, and the rest stay
where they were. Points are derived from each shard's address, not its position in the
list, so every process agrees whatever order its ``hosts`` are listed in.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Sequence

POINTS_PER_NODE = 160


def ring_hash(text: str) -> int:
    """A stable 64-bit hash (Python's own ``hash`` differs between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Maps a key to the index of the node that owns it."""

    def __init__(self, nodes: Sequence[str], points_per_node: int = POINTS_PER_NODE):
        if not nodes:
            raise ValueError("a hash ring needs at least one node")
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"hash ring nodes must be distinct, got {list(nodes)}")
        points = sorted((ring_hash(f"{node}#{replica}"), index)
                        for index, node in enumerate(nodes) for replica in range(points_per_node))
        self.nodes = tuple(nodes)
        self._hashes = [point for point, _ in points]
        self._owners = [owner for _, owner in points]

    def index_for(self, key: str) -> int:
        if len(self.nodes) == 1:
            return 0
        position = bisect.bisect_left(self._hashes, ring_hash(key))
        return self._owners[position % len(self._hashes)]

    def node_for(self, key: str) -> str:
        return self.nodes[self.index_for(key)]
