"""The matrix's server kinds on real processes: postgres, nats and valkey each start, answer,
restart in place (same port, new pid), make the faults they offer, and stop by pid leaving
nothing behind. Short: the whole file is the gate's smoke run of these kinds."""

from __future__ import annotations

import asyncio

import nats
import psycopg
import pytest
import valkey

from asgi_conformance import servers
from tests.test_servers import accepts, alive, port_of

ENV_VARS = (servers.POSTGRES_URL_ENV, servers.NATS_URL_ENV, servers.VALKEY_URLS_ENV)


@pytest.fixture(autouse=True)
def _no_addresses_from_env(monkeypatch):
    """These tests are about starting servers: an address exported by the caller must not bypass them."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _restarts_in_place(handle: servers.Servers) -> None:
    url, old_pid = handle.url, handle[0].pid
    handle.restart()
    assert handle.url == url
    assert handle[0].pid != old_pid and not alive(old_pid)


def _stopped(pid: int, url: str, workdir) -> None:
    assert not alive(pid)
    assert not accepts(port_of(url))
    assert not workdir.exists()


def test_postgres_answers_restarts_keeping_its_tables_drops_clients_and_stops():
    with servers.servers_for("postgres") as handle:
        url = handle.url
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        assert {"restart", "pause", "drop_connections"} <= {f.value for f in handle.faults}
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int)")
            assert connection.execute("SELECT 1").fetchone() == (1,)
        held = psycopg.connect(url, autocommit=True)
        assert handle.drop_connections() == 1
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        _restarts_in_place(handle)
        with psycopg.connect(url, autocommit=True) as connection:  # a database restart keeps its data
            assert connection.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        handle.pause(0.2)
        pid, workdir = handle[0].pid, handle[0].workdir
    _stopped(pid, url, workdir)


def test_postgres_listens_on_loopback_and_its_own_socket_dir_only():
    with servers.servers_for("postgres") as handle:
        with psycopg.connect(handle.url, autocommit=True) as connection:
            settings = dict(connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'unix_socket_directories')").fetchall())
        assert settings == {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(handle[0].workdir)}


def test_nats_answers_restarts_pauses_and_stops():
    async def round_trip(url: str) -> bytes:
        client = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
        try:
            subscription = await client.subscribe("ping")
            await client.publish("ping", b"pong")
            return (await subscription.next_msg(timeout=5)).data
        finally:
            await client.close()

    with servers.servers_for("nats") as handle:
        url = handle.url
        assert url.startswith("nats://127.0.0.1:")
        assert {f.value for f in handle.faults} == {"restart", "pause"}
        assert asyncio.run(round_trip(url)) == b"pong"
        _restarts_in_place(handle)
        handle.pause(0.2)
        assert asyncio.run(round_trip(url)) == b"pong"
        with pytest.raises(servers.ServerError, match="offers no drop_connections"):
            handle.drop_connections()
        pid, workdir = handle[0].pid, handle[0].workdir
    _stopped(pid, url, workdir)


def test_valkey_shards_are_independent_lose_state_on_restart_and_stop():
    with servers.servers_for("valkey", 2) as handle:
        first, second = (valkey.Valkey.from_url(url) for url in handle.urls)
        first.set("only-on-the-first", b"1")
        assert [bool(c.exists("only-on-the-first")) for c in (first, second)] == [True, False]
        assert handle.drop_connections() >= 1
        url = handle.url
        _restarts_in_place(handle)
        assert not valkey.Valkey.from_url(url).exists("only-on-the-first")
        pid, workdir = handle[0].pid, handle[0].workdir
    _stopped(pid, url, workdir)


def test_nats_and_postgres_refuse_more_than_one_server():
    for kind in ("nats", "postgres"):
        with pytest.raises(servers.ServerError, match=f"{kind}:2: only one server"):
            with servers.servers_for(kind, 2):
                pass
