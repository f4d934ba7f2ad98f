"""The servers' fault handle on real servers, each fault observed from a client.

restart: the port answers again and the old state is gone; pause: nothing answers while the
server is suspended, everything does after, with the data still there; drop_connections: open
clients see their connection lost, the data stays, and the count is theirs; a server the
environment gave refuses every fault. Raw sockets stand in for clients where a library would
reconnect behind the test's back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pika
import psutil
import pytest

from asgi_conformance import servers
from asgi_conformance.servers import Fault
from tests.test_servers import _no_addresses_from_env, accepts, alive, port_of, process_tree  # noqa: F401 - the fixture too

PROBE_TIMEOUT = 0.5  # seconds a suspended server is given to answer (it must not)
SECONDS_STOPPED = 1.0  # how long Servers.pause() keeps a server suspended in these tests


# --- Clients that talk on one socket and never reconnect ----------------------------------------

class RespClient:
    """One Redis connection, raw RESP: a lost connection shows as such, never as a silent reconnect."""

    def __init__(self, url: str):
        self.sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        self.replies = self.sock.makefile("rb")

    def send(self, *words: str) -> None:
        encoded = [word.encode() for word in words]
        self.sock.sendall(b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded))

    def reply(self) -> bytes:
        """The next reply's first line (b"" once the server closed the connection)."""
        return self.replies.readline().rstrip(b"\r\n")

    def ask(self, *words: str) -> bytes:
        self.send(*words)
        return self.reply()

    def close(self) -> None:
        self.replies.close()
        self.sock.close()


def connection_lost(client: RespClient) -> bool:
    """True when the server closed this connection: the next command finds no one there."""
    try:
        return client.ask("PING") == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@contextlib.contextmanager
def one_redis() -> Iterator[servers.Servers]:
    with servers.redis_servers() as handle:
        yield handle


def amqp_handshake_starts(url: str, timeout: float) -> bool:
    """Whether the broker sends its Connection.Start within ``timeout`` of our protocol header
    (the TCP connect alone proves nothing: the kernel accepts for a suspended process too)."""
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        sock.settimeout(timeout)
        try:
            frame = sock.recv(1)
        except TimeoutError:
            return False
        return frame == b"\x01"  # a method frame: Connection.Start


def amqp(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def queue_depth(url: str, queue: str) -> int | None:
    """Messages in ``queue``, or None when the broker does not know it."""
    connection = amqp(url)
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as closed:
        assert closed.reply_code == 404, closed
        return None
    finally:
        if connection.is_open:
            connection.close()


def statuses(pids: list[int]) -> set[str]:
    return {psutil.Process(pid).status() for pid in pids if alive(pid)}


# --- Redis -------------------------------------------------------------------------------------

@pytest.mark.redis
def test_redis_offers_restart_pause_and_drop_but_no_failover():
    with one_redis() as handle:
        assert handle.faults == {Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS}
        with pytest.raises(servers.ServerError, match="offers no failover"):
            handle.failover()


@pytest.mark.redis
def test_redis_restart_answers_on_the_same_port_with_the_keys_gone():
    with one_redis() as handle:
        url, old_pid = handle.url, handle[0].pid
        client = RespClient(url)
        assert client.ask("SET", "before-restart", "1") == b"+OK"
        handle.restart()
        assert connection_lost(client), "a connection to the old process survived its restart"
        assert handle.url == url and handle[0].pid != old_pid and not alive(old_pid)
        fresh = RespClient(url)
        assert fresh.ask("EXISTS", "before-restart") == b":0", "the restarted server kept its keys"
        fresh.close()
        client.close()


@pytest.mark.redis
def test_redis_cannot_be_asked_to_keep_its_state_across_a_restart():
    with one_redis() as handle:
        pid = handle[0].pid
        with pytest.raises(servers.ServerError, match="without persistence"):
            handle.restart(keep_state=True)
        assert handle[0].pid == pid, "a refused restart still restarted the server"


@pytest.mark.redis
def test_a_suspended_redis_answers_nothing_until_resumed_and_keeps_its_keys():
    with one_redis() as handle:
        client = RespClient(handle.url)
        assert client.ask("SET", "kept", "yes") == b"+OK"
        handle[0].suspend()
        try:
            assert statuses([handle[0].pid]) == {psutil.STATUS_STOPPED}
            client.send("GET", "kept")
            client.sock.settimeout(PROBE_TIMEOUT)
            with pytest.raises(TimeoutError):
                client.sock.recv(1)  # on the socket: a timed-out file object could not read the reply later
        finally:
            handle[0].resume()
        client.sock.settimeout(10)
        assert client.reply() == b"$3", "the command sent while suspended was not answered after resume"
        assert client.reply() == b"yes"
        client.close()


@pytest.mark.redis
def test_servers_pause_holds_a_command_for_the_pause_and_answers_it_after():
    with servers.redis_servers(2) as handle:
        clients = [RespClient(url) for url in handle.urls]
        pausing = threading.Thread(target=handle.pause, args=(SECONDS_STOPPED,))
        started = time.monotonic()
        pausing.start()
        try:
            pids = [server.pid for server in handle]
            while statuses(pids) != {psutil.STATUS_STOPPED}:  # both suspended, then ask
                assert pausing.is_alive(), "pause() returned before both servers were stopped"
                time.sleep(0.01)
            replies = [client.ask("PING") for client in clients]
            elapsed = time.monotonic() - started
        finally:
            pausing.join()
        assert replies == [b"+PONG", b"+PONG"]
        assert elapsed >= SECONDS_STOPPED, f"answered after {elapsed:.2f} s of a {SECONDS_STOPPED} s pause"
        assert statuses(pids) & {psutil.STATUS_STOPPED} == set(), "a server is still stopped after pause()"
        for client in clients:
            client.close()


@pytest.mark.redis
def test_a_suspended_redis_is_stopped_by_its_context_at_once():
    started = time.monotonic()
    with one_redis() as handle:
        pid = handle[0].pid
        handle[0].suspend()
    assert not alive(pid)
    assert time.monotonic() - started < 10, "stopping waited for the SIGTERM timeout: it was never resumed"


@pytest.mark.redis
def test_redis_drop_connections_closes_every_client_and_keeps_the_data():
    with one_redis() as handle:
        commands = [RespClient(handle.url) for _ in range(2)]
        assert commands[0].ask("SET", "kept", "yes") == b"+OK"
        assert commands[1].ask("PING") == b"+PONG"
        subscriber = RespClient(handle.url)
        subscriber.send("SUBSCRIBE", "news")
        confirmation = [subscriber.reply() for _ in range(6)]
        assert confirmation == [b"*3", b"$9", b"subscribe", b"$4", b"news", b":1"], "the subscription was not confirmed"

        assert handle.drop_connections() == 3

        assert [connection_lost(client) for client in [*commands, subscriber]] == [True, True, True]
        fresh = RespClient(handle.url)
        assert fresh.ask("GET", "kept") == b"$3" and fresh.reply() == b"yes", "dropping connections lost data"
        assert handle.drop_connections() == 1, "only the fresh client was left to drop"
        assert connection_lost(fresh)
        for client in [*commands, subscriber, fresh]:
            client.close()


# --- servers somebody else runs ----------------------------------------------------------------------

def test_a_server_the_environment_gave_refuses_every_fault():
    given = servers.Server("redis://127.0.0.1:1")
    assert given.faults == frozenset()
    for fault in (given.restart, given.suspend, given.resume, given.drop_connections, given.failover):
        with pytest.raises(servers.ServerError, match="given by the environment, not started here"):
            fault()
    handle = servers.Servers([given])
    assert handle.faults == frozenset()
    with pytest.raises(servers.ServerError, match="given by the environment"):
        handle.pause(SECONDS_STOPPED)


# --- RabbitMQ ------------------------------------------------------------------------------------

@pytest.mark.rabbitmq
def test_rabbitmq_offers_restart_pause_and_drop_but_no_failover(rabbitmq_broker):
    assert rabbitmq_broker.faults == {Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS}
    with pytest.raises(servers.ServerError, match="offers no failover"):
        rabbitmq_broker.failover()


@pytest.mark.rabbitmq
def test_rabbitmq_restart_forgets_queues_exchanges_and_bindings(rabbitmq_broker):
    url, old_pid = rabbitmq_broker.url, rabbitmq_broker[0].pid
    queue, exchange = f"faults-restart-{old_pid}", f"faults-exchange-{old_pid}"
    connection = amqp(url)
    channel = connection.channel()
    channel.exchange_declare(exchange, "direct", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="key")
    channel.basic_publish(exchange, "key", b"persistent", pika.BasicProperties(delivery_mode=2))
    connection.close()
    assert queue_depth(url, queue) == 1
    old_processes = process_tree(old_pid)

    rabbitmq_broker.restart()

    assert rabbitmq_broker.url == url
    assert rabbitmq_broker[0].pid != old_pid
    assert [pid for pid in old_processes if alive(pid)] == [], "the old node left processes behind"
    assert queue_depth(url, queue) is None, "a durable queue survived a restart that loses the state"
    connection = amqp(url)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="404"):
        connection.channel().exchange_declare(exchange, passive=True)
    connection.close()


@pytest.mark.rabbitmq
def test_a_suspended_broker_answers_nothing_until_resumed_and_keeps_its_queues(rabbitmq_broker):
    node = rabbitmq_broker[0]
    queue = f"faults-pause-{node.pid}"
    connection = amqp(rabbitmq_broker.url)
    connection.channel().queue_declare(queue, durable=True)
    connection.close()
    epmd = node.helpers[0].pid
    pids = node.pause_pids()
    assert any(psutil.Process(pid).name().startswith("beam") for pid in pids), "the Erlang VM is not paused"
    assert epmd not in pids

    node.suspend()
    try:
        assert statuses(pids) == {psutil.STATUS_STOPPED}
        assert statuses([epmd]) != {psutil.STATUS_STOPPED}
        assert not amqp_handshake_starts(rabbitmq_broker.url, PROBE_TIMEOUT), "a suspended broker answered"
    finally:
        node.resume()

    assert amqp_handshake_starts(rabbitmq_broker.url, 30), "the resumed broker does not answer"
    assert queue_depth(rabbitmq_broker.url, queue) == 0, "the queue is gone after a pause"
    assert node.pid == pids[0], "the broker was restarted, not paused"


@pytest.mark.rabbitmq
def test_rabbitmq_drop_connections_closes_every_client_and_keeps_the_queues(rabbitmq_broker):
    url = rabbitmq_broker.url
    rabbitmq_broker.drop_connections()  # whatever earlier tests of this session left open
    queue = f"faults-drop-{rabbitmq_broker[0].pid}"
    clients = [amqp(url) for _ in range(2)]
    channels = [client.channel() for client in clients]
    channels[0].queue_declare(queue, durable=True)
    channels[0].confirm_delivery()  # the publish returns once the broker has the message
    channels[0].basic_publish("", queue, b"kept", pika.BasicProperties(delivery_mode=2))

    assert rabbitmq_broker.drop_connections() == 2

    for channel in channels:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            channel.queue_declare(queue, passive=True)
    assert queue_depth(url, queue) == 1, "dropping connections lost a queue or its message"


# --- a cluster: failover ----------------------------------------------------------------------

@pytest.mark.rabbitmq
@pytest.mark.timeout(240)
def test_an_erlang_cluster_fails_over_by_losing_its_first_node():
    from tests.rabbitmq_nodes import local_rabbitmq_cluster

    with local_rabbitmq_cluster(2) as cluster:
        assert Fault.FAILOVER in cluster.faults
        first, second = cluster.urls
        first_pids = cluster[0].pause_pids()

        cluster.failover()

        assert not accepts(port_of(first)) and not any(alive(pid) for pid in first_pids)
        amqp(second).close()
        with pytest.raises(servers.ServerError, match="none to fail over to"):
            cluster.failover()
