"""Redis: ``n`` independent servers (shards), from the environment, a container or the local binary."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .containers import ContainerServer, docker_engine_answers
from .environment import find_binary, urls_from_env
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .processes import LocalServer, ServerProcess, Starter, owned_servers
from .redis_admin import drop_redis_clients

REDIS_URLS_ENV = "ASGI_TEST_REDIS_URLS"
REDIS_IMAGE = "redis:7-alpine"


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
    if docker_engine_answers():
        starter = container_redis
    else:
        binary = find_binary("redis-server", "redis-server")

        def starter() -> Server:
            return LocalRedis(binary)

    with owned_servers([starter] * n) as servers:
        yield servers


class LocalRedis(LocalServer):
    """redis-server on a free loopback port, no persistence, its files in a temp dir.

    Its state is in memory only: a restart loses it with nothing to remove."""

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})

    def __init__(self, binary: str, name: str = "redis"):
        """``name``: what the server calls itself in paths and errors (valkey runs as this too)."""
        workdir = Path(tempfile.mkdtemp(prefix=f"asgi-conformance-{name}-"))
        port = free_port()
        log = workdir / f"{name}.log"
        command = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--dir", str(workdir), "--logfile", str(log)]
        super().__init__(f"redis://{LOOPBACK}:{port}", ServerProcess(command, port, log), workdir, log,
                         f"{name}-server on port {port}")

    def drop_connections(self) -> int:
        return drop_redis_clients(self.url)


class ContainerRedis(ContainerServer):
    """Redis in a container; its clients are dropped as a local server's are."""

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})

    def drop_connections(self) -> int:
        return drop_redis_clients(self.url)


def container_redis() -> Server:
    from testcontainers.community.redis import RedisContainer

    return ContainerRedis(lambda: RedisContainer(REDIS_IMAGE), 6379, "redis://{host}:{port}", "Redis")
