"""Throwaway servers for test runs, one module per kind (``redis``, ``rabbitmq``, and for the
public layers' matrix ``valkey``, ``postgres``, ``nats``).

Where an address comes from, in order of preference:

1. the environment: ``ASGI_TEST_REDIS_URLS`` (comma-separated) and ``ASGI_TEST_RABBITMQ_URL``,
   so CI with service containers, or a developer with a server already running, starts nothing
   (``environment``);
2. testcontainers, but only when a Docker engine answers (checked quickly and quietly:
   ``containers``), on the host's network; ``ASGI_TEST_SERVERS=local|containers`` forces one;
3. the local binaries (Debian's ``redis-server`` / ``rabbitmq-server``) on free loopback ports,
   with their data in a temp dir (``processes``, ``network``).

Every server started here is stopped by its own pid when its context ends, and can be restarted
in place, on the same port, so layer tests can prove they survive a server restart mid-traffic.
``kinds`` maps the ``--asgi-server`` names to the kinds' context managers.
"""

from .containers import DOCKER_PROBE_TIMEOUT, SERVER_SOURCE_ENV, ServerSource, docker_engine_answers, use_containers
from .environment import INSTALL_HINT
from .handles import Fault, Server, ServerError, Servers
from .kinds import KINDS, servers_for
from .nats import NATS_URL_ENV, nats_server
from .network import LOOPBACK, free_port, wait_for_accept
from .postgres import POSTGRES_URL_ENV, postgres_server
from .processes import PROCESS_TIMEOUT
from .rabbitmq import (
    RABBITMQ_BIN_DIR,
    RABBITMQ_BIN_DIR_ENV,
    RABBITMQ_IMAGE,
    RABBITMQ_URL_ENV,
    local_rabbitmq_server,
    rabbitmq_server,
)
from .redis import REDIS_IMAGE, REDIS_URLS_ENV, redis_servers
from .valkey import VALKEY_URLS_ENV, valkey_servers

__all__ = [
    "DOCKER_PROBE_TIMEOUT", "Fault", "INSTALL_HINT", "KINDS", "LOOPBACK", "NATS_URL_ENV", "POSTGRES_URL_ENV",
    "PROCESS_TIMEOUT", "RABBITMQ_BIN_DIR", "RABBITMQ_BIN_DIR_ENV", "RABBITMQ_IMAGE", "RABBITMQ_URL_ENV",
    "REDIS_IMAGE", "REDIS_URLS_ENV", "SERVER_SOURCE_ENV", "Server", "ServerError", "ServerSource", "Servers",
    "VALKEY_URLS_ENV", "docker_engine_answers", "free_port", "local_rabbitmq_server", "nats_server",
    "postgres_server", "rabbitmq_server", "redis_servers", "servers_for", "use_containers", "valkey_servers",
    "wait_for_accept",
]
