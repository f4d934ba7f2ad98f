"""The server kinds ``--asgi-server`` can start, by name: a new kind is a module and a line here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from .handles import ServerError, Servers
from .nats import nats_server
from .postgres import postgres_server
from .rabbitmq import rabbitmq_server
from .redis import redis_servers
from .redis_cluster import redis_cluster
from .sentinel import sentinel_sets
from .valkey import valkey_servers


def _one_rabbitmq_broker(count: int) -> AbstractContextManager[Servers]:
    if count != 1:
        raise ServerError(f"rabbitmq:{count}: only one broker per run is supported")
    return rabbitmq_server()


# kind -> a context manager of ``count`` servers of that kind
KINDS: dict[str, Callable[[int], AbstractContextManager[Servers]]] = {
    "redis": redis_servers,
    "rabbitmq": _one_rabbitmq_broker,
    "valkey": valkey_servers,
    "postgres": postgres_server,
    "nats": nats_server,
    "redis-sentinel": sentinel_sets,  # a master, a replica and three sentinels per shard
    "redis-cluster": redis_cluster,  # N masters, one replica each
}


@contextlib.contextmanager
def servers_for(kind: str, count: int = 1) -> Iterator[Servers]:
    """The plugin's entry: ``count`` Redis or Valkey shards, or one RabbitMQ broker, PostgreSQL or
    NATS server (``.urls``, and the fault handle)."""
    start = KINDS.get(kind)
    if start is None:
        raise ServerError(f"unknown server kind {kind!r}: expected {' or '.join(KINDS)}")
    with start(count) as servers:
        yield servers
