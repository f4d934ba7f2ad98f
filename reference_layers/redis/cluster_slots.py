"""Which node of a Redis Cluster serves a key: hash slots (CRC16 of the key or its ``{tag}``) and
the slot map read from ``CLUSTER SLOTS``.

The map is ours, not redis-py's ``RedisCluster``: the layer's hot path is one pipelined EVALSHA on
a multiplexed connection (wire.py), and routing it costs one CRC16 and a list index here, where a
redis-py cluster client would add its own connection pools, command parsing and retry layers on
every call. The map is read again only when a node says it is wrong (MOVED, CLUSTERDOWN, a dead
node), see cluster.py.
"""

from __future__ import annotations

from dataclasses import dataclass

SLOTS = 16384


def _table() -> list[int]:
    """CRC16/XMODEM (polynomial 0x1021), the checksum Redis Cluster hashes keys with."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key``: of its hash tag (the text between the first ``{`` and the next
    ``}``, when not empty), else of the whole key."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


@dataclass(frozen=True)
class NodeName:
    """A master's address as the cluster announces it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class SlotMap:
    """Slot -> the master serving it; ``None`` for a slot no master serves (yet)."""

    def __init__(self, owners: list[NodeName | None] | None = None):
        self.owners: list[NodeName | None] = owners if owners is not None else [None] * SLOTS

    @classmethod
    def from_cluster_slots(cls, reply: list, default_host: str) -> SlotMap:
        """From a ``CLUSTER SLOTS`` reply: ``[[start, end, [host, port, id, ...], replicas...], ...]``.
        An empty host (a node that does not know its own address) is the one we asked."""
        owners: list[NodeName | None] = [None] * SLOTS
        for start, end, master, *_ in reply:
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            node = NodeName(host or default_host, int(master[1]))
            for slot in range(int(start), int(end) + 1):
                owners[slot] = node
        return cls(owners)

    def owner(self, slot: int) -> NodeName | None:
        return self.owners[slot]

    def moved(self, slot: int, node: NodeName) -> None:
        """A MOVED reply told us ``slot``'s new owner."""
        self.owners[slot] = node

    def masters(self) -> list[NodeName]:
        return sorted({node for node in self.owners if node is not None}, key=str)

    def complete(self) -> bool:
        return all(node is not None for node in self.owners)


def parse_redirect(message: str) -> tuple[str, int, NodeName] | None:
    """``MOVED 3999 127.0.0.1:6381`` / ``ASK ...`` as (kind, slot, node); None for other errors."""
    parts = message.split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = parts[2].rpartition(":")
    return parts[0], int(parts[1]), NodeName(host, int(port))
