"""The matrix's columns: what a column is, and the public layers beyond the first four.

A column is one layer, the server kind it runs on (started once for the whole matrix, and again
for its FAULT run), and what its user would declare it does not offer. The ecosystem's columns
are a table of their own, so a column added elsewhere merges without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    name: str
    dotted_path: str
    server: str | None = None  # a kind --asgi-server knows, with its count: "redis", "redis:3", "postgres"
    config_key: str | None = None
    args: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def fault_args(self) -> tuple[str, ...]:
        """How the FAULT run starts its own server: the column's kind, shards and config key."""
        if not self.server:
            return ()
        key = (f"--asgi-server-config-key={self.config_key}",) if self.config_key else ()
        return (f"--asgi-server={self.server}", *key)


# Where each kind's address(es) go in a layer's config, and the kinds that take a list of shards:
# the plugin's defaults, so a column's FAULT run (--asgi-server) fills in the same key.
SERVER_KEYS = {"redis": "hosts", "rabbitmq": "url", "redis-sentinel": "hosts", "redis-cluster": "hosts",
               "valkey": "hosts", "postgres": "url",
               "nats": "servers"}
LISTED_KINDS = frozenset({"redis", "redis-sentinel", "redis-cluster", "valkey"})

PUBSUB_DECLARES = (
    "--asgi-unsupported=backlog=Pub/Sub reaches only receivers already subscribed",
    "--asgi-unsupported=capacity=Pub/Sub queues nothing, so nothing fills up",
    "--asgi-unsupported=expiry=Pub/Sub stores no message that could expire",
)

ECOSYSTEM_COLUMNS = [
    Column("channels-valkey", "channels_valkey.core.ValkeyChannelLayer", server="valkey"),
    Column("channels-valkey ×3", "channels_valkey.core.ValkeyChannelLayer", server="valkey:3"),
    Column("channels-valkey pubsub", "channels_valkey.pubsub.ValkeyPubSubChannelLayer", server="valkey",
           args=PUBSUB_DECLARES),
    # SQLite files relative to the run's working directory, which its peers share.
    Column("channels-lite", "tools.django_layers.lite_layer", config={"path": "channels-lite.sqlite3"}),
    Column("channels-lite aio", "tools.django_layers.lite_aio_layer", config={"path": "channels-lite-aio.sqlite3"}),
    Column("channels-postgres", "tools.django_layers.postgres_layer", server="postgres", args=(
        "--asgi-unsupported=capacity=channels-postgres has no channel capacity by design (its README)",)),
    Column("channels-nats", "channels_nats.NatsChannelLayer", server="nats", args=(
        "--asgi-unsupported=backlog=channels-nats: messages published before a channel's first receive are lost",
        "--asgi-unsupported=group-expiry=channels-nats stores group_expiry and never enforces it")),
    # The embedded layer binds its PUB socket in the sending process: its README allows one
    # sending process. The dedicated layer needs a forwarding daemon the package does not ship.
    Column("channels-zmq", "channels_zmq.core.EmbeddedZmqChannelLayer",
           config={"pub_socket_address": "ipc://channels-zmq.sock"}, args=(
               "--asgi-single-process",
               "--asgi-unsupported=backlog=channels-zmq is ZeroMQ PUB/SUB: only subscribed receivers get a message")),
]
