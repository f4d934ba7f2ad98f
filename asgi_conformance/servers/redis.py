"""Redis: ``n`` independent servers (shards), from the environment, a container or the local binary."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .containers import ContainerServer, use_containers
from .environment import find_binary, urls_from_env
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .processes import LocalServer, ServerProcess, Starter, owned_servers
from .redis_admin import drop_redis_clients

REDIS_URLS_ENV = "ASGI_TEST_REDIS_URLS"
REDIS_IMAGE = "redis:7"  # ci/debian_rootfs.py builds it from Debian's redis-server


@contextlib.contextmanager
def redis_servers(n: int = 1) -> Iterator[Servers]:
    """``n`` independent Redis servers (shards); ``.urls`` are ``redis://127.0.0.1:PORT``."""
    if n < 1:
        raise ServerError(f"asked for {n} Redis servers: need at least 1")
    given = urls_from_env(REDIS_URLS_ENV, ("redis", "rediss", "unix"))
    if given:
        if len(given) < n:
            raise ServerError(f"{REDIS_URLS_ENV} lists {len(given)} server(s), {n} independent ones are needed")
        yield Servers([Server(url) for url in given[:n]])
        return
    starter: Starter
    if use_containers():
        starter = ContainerRedis
    else:
        binary = find_binary("redis-server", "redis-server")

        def starter() -> Server:
            return LocalRedis(binary)

    with owned_servers([starter] * n) as servers:
        yield servers


def redis_command(binary: str, port: int) -> list[str]:
    """redis-server on loopback ``port``, without persistence: a restart loses its state."""
    return [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--daemonize", "no"]


class LocalRedis(LocalServer):
    """redis-server on a free loopback port, no persistence, its files in a temp dir.

    Its state is in memory only: a restart loses it with nothing to remove."""

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})

    def __init__(self, binary: str, name: str = "redis"):
        """``name``: what the server calls itself in paths and errors (valkey runs as this too)."""
        workdir = Path(tempfile.mkdtemp(prefix=f"asgi-conformance-{name}-"))
        port = free_port()
        log = workdir / f"{name}.log"
        command = [*redis_command(binary, port), "--dir", str(workdir), "--logfile", str(log)]
        super().__init__(f"redis://{LOOPBACK}:{port}", ServerProcess(command, port, log), workdir, log,
                         f"{name}-server on port {port}")

    def drop_connections(self) -> int:
        return drop_redis_clients(self.url)


class ContainerRedis(ContainerServer):
    """Redis in a container on the host's network; its clients are dropped as a local server's are."""

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})

    def __init__(self) -> None:
        super().__init__(REDIS_IMAGE, lambda port: redis_command("redis-server", port), lambda port: {},
                         "redis://{host}:{port}", "Redis")

    def drop_connections(self) -> int:
        return drop_redis_clients(self.url)
