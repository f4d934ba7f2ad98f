"""Which layers the benchmark runs, what they are compared with, and how each is built."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from bench import nats_server


@dataclass(frozen=True)
class Contender:
    name: str  # short label in tables and charts
    dotted_path: str
    server: str | None  # None, "redis", "redis-cluster", "rabbitmq" or "nats"
    peer: str | None  # name of the contender this one is compared with
    config_key: str | None = None  # where the server address goes
    cross_process: bool = True  # two processes can meet on a normal channel
    multi_process: bool = True  # a group's members may be held by other processes
    extra: dict = field(default_factory=dict)
    renames: dict = field(default_factory=dict)  # a workload's override -> this layer's own keys
    host_options: dict = field(default_factory=dict)  # per Redis host, for layers taking host dicts
    fan_out_only: bool = False  # a floor of the fan-out workloads, not a layer: runs those alone

    def own_keys(self, overrides: dict) -> dict:
        """Overrides in this layer's own config keys (channels_rabbitmq has no ``capacity``)."""
        renamed = {}
        for key, value in overrides.items():
            for own in self.renames.get(key, (key,)):
                renamed[own] = value
        return renamed

    def config(self, servers: dict, shards: int = 1) -> dict:
        config = dict(self.extra)
        if self.server == "redis":
            urls = servers["redis"][:shards]
            config[self.config_key or "hosts"] = (
                [{"address": url, **self.host_options} for url in urls] if self.host_options else urls)
        elif self.server == "redis-cluster":  # the whole cluster, whatever ``shards`` says
            config[self.config_key or "hosts"] = servers["redis-cluster"]
        elif self.server == "rabbitmq":
            config[self.config_key or "url"] = servers["rabbitmq"]
        elif self.server == "nats":
            config[self.config_key or "url"] = servers["nats"]
        return config

    def factory(self):
        module_name, _, attribute = self.dotted_path.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)

    def available(self) -> str | None:
        """None if the layer imports, else why not."""
        try:
            self.factory()
        except Exception as exc:  # noqa: BLE001 - a missing optional layer is reported, not fatal
            return f"{type(exc).__name__}: {exc}"
        if self.server == "nats" and nats_server.binary() is None:
            return "nats-server is not installed"
        return None


CONTENDERS = [
    Contender("channels-inmemory", "channels.layers.InMemoryChannelLayer", None, None, cross_process=False,
              multi_process=False),
    Contender("inmemory", "reference_layers.inmemory.InMemoryChannelLayer", None, "channels-inmemory",
              cross_process=False, multi_process=False),
    # redis-py's pool stops at 100 connections by default: a fair pool serves 100 senders at once.
    Contender("channels_redis", "channels_redis.core.RedisChannelLayer", "redis", None,
              host_options={"max_connections": 1000}),
    # Pub/Sub keeps nothing for a normal channel until someone subscribes to it, so the
    # cross-process workloads (sender and receiver meet on a normal channel) cannot run on it.
    Contender("channels_redis-pubsub", "channels_redis.pubsub.RedisPubSubChannelLayer", "redis", None,
              cross_process=False),
    Contender("redis", "reference_layers.redis.RedisChannelLayer", "redis", "channels_redis"),
    # Not a layer: one copy per process on one Redis list each, nothing a layer owes its users
    # (bench/redis_floor_layer.py). The fan-out targets read against what the machine allows.
    Contender("floor-redis", "bench.redis_floor_layer.FloorRedisLayer", "redis", None, fan_out_only=True),
    # One 3-master Redis Cluster (a replica each) as one shard: compared with 3 independent shards.
    Contender("redis-cluster", "reference_layers.redis.RedisChannelLayer", "redis-cluster", "redis"),
    # channels_rabbitmq refuses normal channels, which the cross-process workloads meet on.
    Contender("channels_rabbitmq", "channels_rabbitmq.core.RabbitmqChannelLayer", "rabbitmq", None,
              config_key="host", cross_process=False,
              renames={"capacity": ("local_capacity", "remote_capacity")}),
    Contender("rabbitmq", "reference_layers.rabbitmq.RabbitMQChannelLayer", "rabbitmq", "channels_rabbitmq"),
    Contender("ipc", "reference_layers.ipc.IPCChannelLayer", None, "channels_redis",
              extra={"prefix": "bench"}),
    # The anchor: one NATS publish per group_send, fanned out inside each receiving process.
    # Nothing sent to a normal channel before its first receive() is kept (the cross-process
    # workloads send first). A full mailbox drops silently instead of raising ChannelFull, so
    # a sender cannot back off: the capacity is made large enough that no workload drops.
    Contender("channels-nats", "channels_nats.NatsChannelLayer", "nats", None, config_key="servers",
              cross_process=False, extra={"prefix": "bench", "capacity": 100_000}),
]

BY_NAME = {c.name: c for c in CONTENDERS}
