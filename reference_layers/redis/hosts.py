"""The ``hosts`` config key, in every form channels_redis accepts, checked when the layer is built.

A host is a URL (``redis://``, ``rediss://``, ``unix://``), a ``(host, port)`` pair, or a
dict: ``{"address": <URL or pair>, **redis_connection_options}`` or ``{"host": ..,
"port": .., **options}``; or a Sentinel entry, ``{"sentinels": [(host, port), ...],
"master_name": ..., "sentinel_kwargs": {...}, **options}`` (sentinel.py). Each becomes a
:class:`ShardAddress`: the keyword arguments of a redis-py connection pool plus a stable name
that places the shard on the hash ring.

Ours only: ``{"cluster": [<URL or pair>, ...], **options}`` makes one shard a whole Redis Cluster,
found through any of the startup nodes listed (a :class:`ClusterAddress`, see cluster.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import UnixDomainSocketConnection, parse_url

from ..core.errors import LayerConfigError
from .sentinel import SentinelTarget, is_sentinel_entry, make_pool, parse_sentinel_entry, shard_name

DEFAULT_HOSTS = [("localhost", 6379)]
CONNECT_TIMEOUT = 5.0  # seconds: a dead address fails a call quickly instead of hanging it
COMMAND_TIMEOUT = 30.0  # seconds: a non-blocking command that takes longer has lost its server


@dataclass(frozen=True)
class ShardAddress:
    name: str  # stable identity on the hash ring, e.g. '127.0.0.1:6379/0'
    options: dict = field(hash=False, compare=False)  # keyword arguments of a redis-py pool
    sentinel: SentinelTarget | None = field(default=None, hash=False, compare=False)  # who names the master


@dataclass(frozen=True)
class ClusterAddress(ShardAddress):
    """A Redis Cluster as one shard: ``options`` of each startup node, the first one's for every node."""

    startup: tuple[dict, ...] = field(default=(), hash=False, compare=False)


def parse_hosts(hosts: Any) -> list[ShardAddress]:
    """Every host as a ShardAddress; LayerConfigError naming the bad entry otherwise."""
    if hosts is None:
        hosts = DEFAULT_HOSTS
    if isinstance(hosts, (str, bytes, dict)) or not isinstance(hosts, (list, tuple)):
        raise LayerConfigError(
            f"hosts must be a list of Redis addresses (URLs, (host, port) pairs or dicts), got {hosts!r}")
    if not hosts:
        raise LayerConfigError("hosts is empty: give at least one Redis address")
    shards = [_parse_host(host) for host in hosts]
    names = [shard.name for shard in shards]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LayerConfigError(f"hosts lists the same Redis server more than once: {duplicates}")
    return shards


def _parse_host(host: Any) -> ShardAddress:
    if isinstance(host, dict) and "cluster" in host:
        return _parse_cluster(host)
    if is_sentinel_entry(host):
        target, options = parse_sentinel_entry(host)
        _with_defaults(host, options, target)
        return ShardAddress(shard_name(target, options.get("db", 0)), options, target)
    if isinstance(host, dict):
        options = dict(host)
        address = options.pop("address", None)
        if address is None:
            if "host" not in options and "path" not in options:
                raise LayerConfigError(f"host dict {host!r} needs an 'address' (URL or (host, port)) or a 'host'")
            base = {}
        else:
            base = _address_options(address, host)
    else:
        base, options = _address_options(host, host), {}
    return _checked(host, {**base, **options})


def _parse_cluster(entry: dict) -> ClusterAddress:
    options = dict(entry)
    startup = options.pop("cluster")
    if isinstance(startup, (str, bytes)) or not isinstance(startup, (list, tuple)) or not startup:
        raise LayerConfigError(f"'cluster' in hosts entry {entry!r} must be a non-empty list of startup nodes "
                               "(URLs or (host, port) pairs)")
    if "address" in options or "host" in options:
        raise LayerConfigError(f"hosts entry {entry!r}: a cluster entry lists its nodes in 'cluster' only")
    given = [{**_address_options(node, entry), **options} for node in startup]
    if any(node.get("connection_class") is UnixDomainSocketConnection for node in given):
        raise LayerConfigError(f"hosts entry {entry!r}: Redis Cluster nodes are reached over TCP, not unix sockets")
    if any(node.get("db", 0) != 0 for node in given):
        raise LayerConfigError(f"hosts entry {entry!r}: a Redis Cluster has database 0 only")
    nodes = tuple(_checked(entry, node) for node in given)
    name = "cluster:" + ",".join(sorted(node.name for node in nodes))
    return ClusterAddress(name, nodes[0].options, startup=tuple(node.options for node in nodes))


def _address_options(address: Any, original: Any) -> dict:
    if isinstance(address, str):
        try:
            options = dict(parse_url(address))
        except ValueError as exc:
            raise LayerConfigError(f"bad Redis URL {address!r} in hosts: {exc}") from None
        if options.get("connection_class") is not UnixDomainSocketConnection and "host" not in options:
            raise LayerConfigError(f"Redis URL {address!r} in hosts names no host")
        return options
    if isinstance(address, (tuple, list)) and len(address) == 2:
        name, port = address
        if not isinstance(name, str) or not name or isinstance(port, bool) or not isinstance(port, int):
            raise LayerConfigError(f"host pair must be (host: str, port: int), got {original!r}")
        return {"host": name, "port": port}
    raise LayerConfigError(
        f"bad entry in hosts: {original!r}; use 'redis://host:port/db', (host, port) or "
        "{'address': ..., **options}")


def _checked(original: Any, options: dict) -> ShardAddress:
    port = options.get("port", 6379)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise LayerConfigError(f"bad port {port!r} in hosts entry {original!r}")
    _with_defaults(original, options, None)
    db = options.get("db", 0)
    if options.get("connection_class") is UnixDomainSocketConnection:
        name = f"unix:{options.get('path')}/{db}"
    else:
        name = f"{options.get('host', 'localhost')}:{port}/{db}"
    return ShardAddress(name, options)


def _with_defaults(original: Any, options: dict, sentinel: SentinelTarget | None) -> None:
    """Our timeouts and protocol where the entry sets none; unknown options fail here, not later."""
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    options.setdefault("socket_timeout", COMMAND_TIMEOUT)
    options.setdefault("socket_keepalive", True)
    # RESP2: with redis-py 8's default RESP3, "maintenance notifications" switch off the pool's
    # check that a pooled connection survived its server, and a send after a restart fails.
    options.setdefault("protocol", 2)
    try:  # builds a connection object without connecting: unknown options fail here, not later
        make_pool(options, sentinel).make_connection()
    except TypeError as exc:
        raise LayerConfigError(f"bad connection option in hosts entry {original!r}: {exc}") from None
