"""Fixtures for our own tests: real Redis and RabbitMQ servers, started lazily, once per session.

Only a session that asks for one of these fixtures pays for the server. Addresses given in
ASGI_TEST_REDIS_URLS / ASGI_TEST_RABBITMQ_URL are used instead of starting anything (those
servers cannot be restarted, so tests that restart one fail with a clear ServerError).
A server that cannot start is an error of the tests that need it, never a skip.
"""

from __future__ import annotations

import pytest

# A test that uses one of these fixtures needs that server: it gets the marker, so
# `pytest -m "not redis and not rabbitmq"` runs with no server and no root. Tests that start a
# server themselves carry the marker in their own file.
SERVER_FIXTURES = {
    "redis": {"redis_server", "redis_urls", "redis_shards", "redis_shard_urls"},
    "rabbitmq": {"rabbitmq_broker", "rabbitmq_url", "standby_broker", "rabbitmq_cluster", "tls_broker"},
}


# A test that allows itself more than the default 300 s (whole-suite runs, the benchmark)
# is one of the slow runs: `pytest -m "not slow"` leaves them out.
SLOW_AFTER_SECONDS = 300


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in SERVER_FIXTURES.items():
            if used & fixtures:
                item.add_marker(marker)
        timeout = item.get_closest_marker("timeout")
        if timeout is not None and timeout.args and timeout.args[0] > SLOW_AFTER_SECONDS:
            item.add_marker("slow")


@pytest.fixture(scope="session")
def redis_server():
    """One Redis server of this session: ``.urls``, ``.url``, ``.restart()`` (same port, its state lost)."""
    from asgi_conformance import servers

    with servers.redis_servers(1) as handle:
        yield handle


@pytest.fixture(scope="session")
def redis_urls(redis_server) -> list[str]:
    """``["redis://127.0.0.1:PORT"]``: the session's Redis server as a layer's ``hosts``."""
    return redis_server.urls


@pytest.fixture(scope="session")
def redis_shards():
    """Three independent Redis servers (real shards): ``.urls``, ``.restart()``, ``[i].restart()``."""
    from asgi_conformance import servers

    with servers.redis_servers(3) as handle:
        yield handle


@pytest.fixture(scope="session")
def redis_shard_urls(redis_shards) -> list[str]:
    """Three URLs of three independent Redis servers, for sharded ``hosts``."""
    return redis_shards.urls


@pytest.fixture(scope="session")
def rabbitmq_broker():
    """The session's one RabbitMQ broker: ``.url``, ``.restart()`` (same port, its state lost; ``keep_state=True`` keeps it)."""
    from asgi_conformance import servers

    with servers.rabbitmq_server() as handle:
        yield handle


@pytest.fixture(scope="session")
def rabbitmq_url(rabbitmq_broker) -> str:
    """``amqp://guest:guest@127.0.0.1:PORT/%2F`` of the session's broker."""
    return rabbitmq_broker.url


@pytest.fixture
def holding_loop():
    """An event loop in a thread of its own, which the test can hold still (tests/loop_thread.py)."""
    from tests.loop_thread import LoopThread

    thread = LoopThread()
    yield thread
    thread.stop()
