"""Loopback ports: a free one to start a server on, and a probe for when it accepts."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Set

LOOPBACK = "127.0.0.1"


def free_port(exclude: Set[int] = frozenset()) -> int:
    import port_for  # only when a server is started: the plugin imports this package lazily

    port: int = port_for.select_random(exclude_ports=set(exclude))
    return port


def wait_for_accept(host: str, port: int, timeout: float) -> bool:
    """Poll until ``host:port`` accepts a TCP connection (the readiness probe of every kind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.1)
    return False
