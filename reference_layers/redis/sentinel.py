"""Sentinel shards: a ``hosts`` entry that names sentinels and a master's name, not a server.

The form is channels_redis's: ``{"sentinels": [(host, port), ...], "master_name": "...",
"sentinel_kwargs": {...}, **connection_options}``. Discovery is plugged in where a connection is
opened and nowhere else: such a shard's pool is redis-py's ``SentinelConnectionPool``, whose
every new connection first asks the sentinels for the master. So every reconnect, after the
master died or after a READONLY reply showed it demoted (wire.py closes that connection), finds
the current master, and the hot path is the plain shard's: one script per send, one socket.

What Sentinel cannot give: Redis replicates asynchronously, so a send the old master
acknowledged but had not passed on to its replica is gone after a failover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from ..core.errors import LayerConfigError

SENTINEL_KEYS = ("sentinels", "master_name", "sentinel_kwargs")
# Options that name one server: a Sentinel shard's server is whichever the sentinels name.
SERVER_KEYS = ("address", "host", "port", "path", "unix_socket_path")
SENTINEL_TIMEOUT = 5.0  # seconds per sentinel asked, unless sentinel_kwargs say otherwise


@dataclass(frozen=True)
class SentinelTarget:
    """Where to ask for a shard's master: the sentinels, and the name they know it by."""

    master_name: str
    sentinels: tuple[tuple[str, int], ...]
    sentinel_kwargs: dict = field(hash=False, compare=False)


def is_sentinel_entry(host: Any) -> bool:
    return isinstance(host, dict) and "sentinels" in host


def parse_sentinel_entry(host: dict) -> tuple[SentinelTarget, dict]:
    """The entry's sentinels and master name, and the rest: the master's connection options."""
    options = dict(host)
    sentinels = options.pop("sentinels")
    master_name = options.pop("master_name", None)
    sentinel_kwargs = options.pop("sentinel_kwargs", None) or {}
    if not isinstance(master_name, str) or not master_name:
        raise LayerConfigError(f"Sentinel hosts entry {host!r} needs a 'master_name' (a non-empty str)")
    if isinstance(sentinels, (str, bytes)) or not isinstance(sentinels, (list, tuple)) or not sentinels:
        raise LayerConfigError(f"Sentinel hosts entry {host!r}: 'sentinels' must be a non-empty list of "
                               "(host, port) pairs")
    pairs = tuple(_pair(sentinel, host) for sentinel in sentinels)
    if not isinstance(sentinel_kwargs, dict):
        raise LayerConfigError(f"Sentinel hosts entry {host!r}: 'sentinel_kwargs' must be a dict")
    clashing = sorted(key for key in SERVER_KEYS if key in options)
    if clashing:
        raise LayerConfigError(f"Sentinel hosts entry {host!r} also names a server ({', '.join(clashing)}): "
                               "the sentinels name the master")
    sentinel_kwargs = {"socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT,
                       **sentinel_kwargs}
    return SentinelTarget(master_name, pairs, sentinel_kwargs), options


def shard_name(target: SentinelTarget, db: int) -> str:
    """A stable place on the hash ring: the master's name and its sentinels, whatever their order."""
    sentinels = ",".join(f"{name}:{port}" for name, port in sorted(target.sentinels))
    return f"sentinel:{target.master_name}@{sentinels}/{db}"


def _pair(sentinel: Any, host: dict) -> tuple[str, int]:
    if isinstance(sentinel, (tuple, list)) and len(sentinel) == 2:
        name, port = sentinel
        if isinstance(name, str) and name and isinstance(port, int) and not isinstance(port, bool) \
                and 0 < port < 65536:
            return name, port
    raise LayerConfigError(f"Sentinel hosts entry {host!r}: each sentinel must be (host: str, port: int), "
                           f"got {sentinel!r}")


def make_pool(options: dict, target: SentinelTarget | None) -> ConnectionPool:
    """What opens a shard's connections: to one server, or to whichever master the sentinels name."""
    if target is None:
        return ConnectionPool(**options)
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=dict(target.sentinel_kwargs))
    return SentinelConnectionPool(target.master_name, manager, **options)


async def close_pool(pool: ConnectionPool) -> None:
    await pool.disconnect()
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()
