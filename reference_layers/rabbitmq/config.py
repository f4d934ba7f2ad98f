"""The RabbitMQ layer's own CONFIG keys: broker URLs, naming prefix and time limits.

Checked once when the layer is built, so a typo in CHANNEL_LAYERS fails at start-up with a
clear LayerConfigError instead of at the first send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

import pika

from ..core.errors import LayerConfigError

_PREFIX = re.compile(r"[A-Za-z0-9\-_.]{1,40}\Z")
DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


@dataclass(frozen=True)
class BrokerConfig:
    urls: tuple[str, ...]
    prefix: str
    timeout: float  # how long a call may wait for an unreachable broker before it raises
    heartbeat: int  # seconds; keeps idle connections (long receives) alive through NAT/firewalls

    def connection_parameters(self, url: str, name: str) -> pika.URLParameters:
        """pika's parameters for ``url``: this config's time limits unless the URL sets them,
        one attempt (the session retries), and ``name`` shown in the broker's connection list."""
        parameters = pika.URLParameters(url)
        query = url.partition("?")[2]
        if "heartbeat" not in query:
            parameters.heartbeat = self.heartbeat
        if "socket_timeout" not in query:
            parameters.socket_timeout = min(5.0, self.timeout)
        if "blocked_connection_timeout" not in query:
            parameters.blocked_connection_timeout = self.timeout
        parameters.connection_attempts = 1
        parameters.retry_delay = 0
        parameters.client_properties = {"connection_name": name}
        return parameters


def parse_broker_config(url=None, urls=None, prefix="asgi", timeout=15.0, heartbeat=10) -> BrokerConfig:
    if url is not None and urls is not None:
        raise LayerConfigError("give either url or urls, not both")
    if urls is None:
        urls = [DEFAULT_URL if url is None else url]
    elif isinstance(urls, str) or not isinstance(urls, (list, tuple)):
        raise LayerConfigError(f"urls must be a list of AMQP URLs, got {urls!r}")
    if not urls:
        raise LayerConfigError("urls is empty: give at least one AMQP URL")
    for item in urls:
        _check_url(item)
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise LayerConfigError(
            f"prefix must be 1-40 ASCII letters, digits, '-', '_' or '.', got {prefix!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise LayerConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 0:
        raise LayerConfigError(f"heartbeat must be a whole number of seconds (0 = off), got {heartbeat!r}")
    return BrokerConfig(tuple(urls), prefix, float(timeout), heartbeat)


def _check_url(url) -> None:
    if not isinstance(url, str):
        raise LayerConfigError(f"an AMQP URL must be a str, got {url!r}")
    parsed = urlparse(url)
    if parsed.scheme not in ("amqp", "amqps") or not parsed.hostname:
        raise LayerConfigError(
            f"{url!r} is not an AMQP URL like amqp://user:password@host:5672/%2F (or amqps:// for TLS)")
    try:
        parsed.port
    except ValueError:
        raise LayerConfigError(f"{url!r} has an invalid port") from None
