"""The servers package on real processes: start, answer, restart in place, stop without leftovers.

And the plugin's --asgi-server option end to end: the address reaches the layer's config
under the right key, the servers are gone after the run, and mistakes are one clear line.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pika
import psutil
import pytest
import redis

from asgi_conformance import servers
from asgi_conformance.servers.network import free_port
from tests.suite_runner import run_suite

ENV_VARS = (servers.REDIS_URLS_ENV, servers.RABBITMQ_URL_ENV, servers.RABBITMQ_BIN_DIR_ENV)


@pytest.fixture(autouse=True)
def _no_addresses_from_env(monkeypatch):
    """These tests are about starting servers: an address exported by the caller must not bypass them."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_tree(pid: int) -> list[int]:
    root = psutil.Process(pid)
    return [root.pid, *(child.pid for child in root.children(recursive=True))]


# --- Redis -------------------------------------------------------------------------------------

@pytest.mark.redis
def test_redis_server_answers_and_stopping_leaves_no_process_nor_port():
    with servers.redis_servers() as handle:
        (url,) = handle.urls
        assert url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping() is True
        pid, workdir = handle[0].pid, handle[0].workdir
        assert workdir.is_dir()
    assert not alive(pid)
    assert not accepts(port_of(url))
    assert not workdir.exists()


@pytest.mark.redis
def test_three_redis_servers_are_independent():
    with servers.redis_servers(3) as handle:
        clients = [redis.Redis.from_url(url) for url in handle.urls]
        assert len({port_of(url) for url in handle.urls}) == 3
        assert len({server.pid for server in handle}) == 3
        clients[0].set("only-on-the-first", b"1")
        assert [bool(client.exists("only-on-the-first")) for client in clients] == [True, False, False]
        pids = [server.pid for server in handle]
    assert not any(alive(pid) for pid in pids)


@pytest.mark.redis
def test_redis_restart_keeps_the_port_with_a_new_process():
    with servers.redis_servers() as handle:
        url, old_pid = handle.url, handle[0].pid
        redis.Redis.from_url(url).set("before-restart", b"1")
        handle.restart()
        assert handle.url == url
        assert handle[0].pid != old_pid and not alive(old_pid)
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert not client.exists("before-restart"), "the restarted server still has the old data: it never restarted"


@pytest.mark.redis
def test_a_server_killed_from_outside_ends_its_context_cleanly():
    with servers.redis_servers() as handle:
        pid, workdir = handle[0].pid, handle[0].workdir
        psutil.Process(pid).kill()
    assert not alive(pid)
    assert not workdir.exists()


@pytest.mark.redis
def test_an_interrupted_block_still_stops_its_servers():
    with pytest.raises(KeyboardInterrupt):
        with servers.redis_servers(2) as handle:
            pids = [server.pid for server in handle]
            raise KeyboardInterrupt
    assert not any(alive(pid) for pid in pids)


# A child that starts a Redis server, never closes its context, prints the server's pid and
# workdir, then pings the server for each line it reads, until its stdin closes.
HOLDING_A_REDIS = """
import sys
import redis
from asgi_conformance import servers
context = servers.redis_servers()  # kept: a collected generator would close, stopping the server
handle = context.__enter__()
print(handle[0].pid, handle[0].workdir, flush=True)
client = redis.Redis.from_url(handle.url)
for line in sys.stdin:
    print(client.ping(), flush=True)
"""


# A run started under nohup passes SIGHUP on ignored, and an ignored signal stays ignored (termination.py).
SIGNALS_AT_DEFAULT = "import signal\nfor signum in (signal.SIGTERM, signal.SIGHUP): signal.signal(signum, signal.SIG_DFL)\n"


def child_holding_a_redis(first: str = "") -> tuple[subprocess.Popen[str], int, Path]:
    """The child running (``first`` is code it runs before it starts the server), its server's pid and workdir."""
    child = subprocess.Popen([sys.executable, "-c", first + HOLDING_A_REDIS], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    started = child.stdout.readline().split()
    assert started, child.communicate(timeout=120)[1]
    pid, workdir = started
    assert alive(int(pid))
    return child, int(pid), Path(workdir)


@pytest.mark.redis
def test_a_context_never_closed_is_stopped_when_the_interpreter_exits():
    child, pid, workdir = child_holding_a_redis()
    _, errors = child.communicate(timeout=120)  # closes its stdin: the script ends, the interpreter exits
    assert child.returncode == 0, errors
    assert not alive(pid)
    assert not workdir.exists()


@pytest.mark.redis
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_terminating_signal_stops_the_servers_and_still_ends_the_process(signum):
    """Python's default for these signals skips atexit: ``timeout`` or a CI cancel would orphan the server."""
    child, pid, workdir = child_holding_a_redis(SIGNALS_AT_DEFAULT)
    child.send_signal(signum)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == -signum, f"the child did not end by {signum!r}: {child.returncode}; {errors}"
    # The server is stopped before the signal ends the child: already gone, no waiting for it.
    survived = alive(pid)
    if survived:
        psutil.Process(pid).kill()  # an orphan of this test's own making: not left behind
    assert not survived, "the server outlived the process that started it"
    assert not workdir.exists()


# A child that starts a server process whose port never accepts, so it waits in start() until
# the timeout; the server process first tells the test its pid over a loopback connection.
STARTING_FOREVER = """
import sys
from pathlib import Path
from asgi_conformance.servers.processes import ServerProcess
tell, port, log = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
server = ("import os, socket, time; "
          f"socket.create_connection(('127.0.0.1', {tell})).sendall(str(os.getpid()).encode()); "
          "time.sleep(300)")
ServerProcess([sys.executable, "-c", server], port, log).start()
"""


def test_a_terminating_signal_stops_a_server_still_waiting_for_its_port(tmp_path):
    """A slow server (RabbitMQ boots for seconds) is in no context until its port accepts."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(60)
        child = subprocess.Popen(
            [sys.executable, "-c", STARTING_FOREVER, str(listener.getsockname()[1]),
             str(free_port()), str(tmp_path / "server.log")], stderr=subprocess.PIPE, text=True)
        try:
            connection, _ = listener.accept()  # the server process runs: the child waits in start()
        except TimeoutError:
            child.kill()
            pytest.fail(f"the server process never started: {child.communicate()[1]}")
        with connection:
            pid = int(connection.recv(64))
    child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGTERM, f"the child did not end by SIGTERM: {child.returncode}; {errors}"
    survived = alive(pid)
    if survived:
        psutil.Process(pid).kill()  # an orphan of this test's own making: not left behind
    assert not survived, "the server outlived the process that was starting it"


@pytest.mark.redis
def test_an_ignored_sighup_stays_ignored():
    """Under ``nohup`` a hangup must not end the run (nor stop its servers)."""
    child, pid, workdir = child_holding_a_redis("import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)\n")
    child.send_signal(signal.SIGHUP)  # an ignored signal is dropped when sent: the child's answer below is after it
    answers, errors = child.communicate("ping\n", timeout=120)
    assert answers.split() == ["True"], f"the child did not answer after SIGHUP ({child.returncode}): {errors}"
    assert child.returncode == 0, errors
    assert not alive(pid)


@pytest.mark.redis
def test_redis_urls_from_env_are_used_and_never_restarted(monkeypatch):
    with servers.redis_servers() as ours:
        monkeypatch.setenv(servers.REDIS_URLS_ENV, f" {ours.url} , ")
        with servers.redis_servers() as given:
            assert given.urls == [ours.url]
            assert not given.restartable
            with pytest.raises(servers.ServerError, match="given by the environment"):
                given.restart()
        assert redis.Redis.from_url(ours.url).ping() is True, "leaving the env context stopped a server it does not own"


def test_env_with_too_few_redis_urls_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(servers.REDIS_URLS_ENV, "redis://127.0.0.1:1")
    with pytest.raises(servers.ServerError, match=r"ASGI_TEST_REDIS_URLS lists 1 server\(s\), 3 independent"):
        with servers.redis_servers(3):
            pass


def test_env_url_of_the_wrong_kind_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(servers.RABBITMQ_URL_ENV, "redis://127.0.0.1:6379")
    with pytest.raises(servers.ServerError, match="ASGI_TEST_RABBITMQ_URL: 'redis://127.0.0.1:6379' is not a amqp://"):
        with servers.rabbitmq_server():
            pass


def test_missing_redis_binary_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no redis-server anywhere
    with pytest.raises(servers.ServerError) as caught:
        with servers.redis_servers():
            pass
    message = str(caught.value)
    assert "\n" not in message
    assert "redis-server not found" in message
    assert "apt-get install redis-server" in message and "ci/install-servers.sh" in message


def test_missing_rabbitmq_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(servers.RABBITMQ_BIN_DIR_ENV, str(tmp_path))
    with pytest.raises(servers.ServerError) as caught:
        with servers.rabbitmq_server():
            pass
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install rabbitmq-server" in message and "ci/install-servers.sh" in message


def test_zero_servers_is_refused():
    with pytest.raises(servers.ServerError, match="at least 1"):
        with servers.redis_servers(0):
            pass


def test_every_server_kind_the_plugin_offers_has_a_module_and_no_other():
    from asgi_conformance.plugin import SERVER_CONFIG_KEYS

    assert set(servers.KINDS) == set(SERVER_CONFIG_KEYS)
    with pytest.raises(servers.ServerError, match="unknown server kind 'memcached': expected redis or rabbitmq or "):
        with servers.servers_for("memcached"):
            pass


# --- RabbitMQ ----------------------------------------------------------------------------------

@pytest.mark.rabbitmq
def test_rabbitmq_accepts_amqp_and_stopping_leaves_no_process_nor_port():
    with servers.rabbitmq_server() as handle:
        url = handle.url
        assert url.startswith("amqp://guest:guest@127.0.0.1:") and url.endswith("/%2F")
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"hello")
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert body == b"hello"
        connection.close()
        node = handle[0]
        pids = process_tree(node.pid) + [epmd.pid for epmd in node.helpers]
        epmd_port = node.helpers[0].port
        workdir = node.workdir
    assert [pid for pid in pids if alive(pid)] == []
    assert not accepts(port_of(url)) and not accepts(epmd_port)
    assert not workdir.exists()


@pytest.mark.rabbitmq
def test_rabbitmq_listens_on_loopback_only(rabbitmq_broker):
    node = rabbitmq_broker[0]
    beam = [p for p in psutil.Process(node.pid).children(recursive=True) if p.name().startswith("beam")]
    assert beam, "no Erlang VM under the launcher"
    listening = {c.laddr for p in [*beam, psutil.Process(node.helpers[0].pid)]
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening, "the node listens nowhere"
    assert {address.ip for address in listening} <= {"127.0.0.1", "::1"}, listening


@pytest.mark.rabbitmq
def test_rabbitmq_restart_keeping_its_state_keeps_the_port_and_the_data(rabbitmq_broker):
    """``keep_state=True``: the node restarts on its mnesia (the plain restart forgets it:
    tests/test_server_faults.py)."""
    url, old_pid = rabbitmq_broker.url, rabbitmq_broker[0].pid
    queue = f"asgi-conformance-restart-{old_pid}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare(queue, durable=True)
    connection.close()

    rabbitmq_broker.restart(keep_state=True)

    assert rabbitmq_broker.url == url
    assert rabbitmq_broker[0].pid != old_pid and not alive(old_pid)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, passive=True)  # raises if the durable queue did not survive
    channel.queue_delete(queue)
    connection.close()


# --- Docker engine detection ---------------------------------------------------------------------

def test_no_docker_engine_at_a_closed_port_means_local_binaries(monkeypatch, capfd):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert servers.docker_engine_answers() is False
    assert capfd.readouterr() == ("", "")


@pytest.mark.timeout(60)
def test_an_engine_that_never_answers_is_given_up_on(monkeypatch, capfd):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    stop = threading.Event()

    def hold_connections():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=hold_connections, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        assert servers.docker_engine_answers(timeout=1.0) is False
        assert accepted, "the probe never even tried the engine address"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        silent.close()
    assert capfd.readouterr() == ("", "")


# --- the plugin's --asgi-server --------------------------------------------------------------------

CHECKING_FACTORIES = '''
"""Factories that prove the address arrived: they talk to the server, then hand out a layer."""
import pika
import redis

from reference_layers.inmemory import InMemoryChannelLayer


def redis_shards(hosts, **config):
    assert isinstance(hosts, list), hosts
    for url in hosts:
        assert redis.Redis.from_url(url).ping()
    with open("hosts.txt", "w") as out:
        out.write("\\n".join(hosts))
    return InMemoryChannelLayer(**config)


def rabbitmq_host(host, **config):
    assert isinstance(host, str), host
    pika.BlockingConnection(pika.URLParameters(host)).close()
    with open("hosts.txt", "w") as out:
        out.write(host)
    return InMemoryChannelLayer(**config)
'''


@pytest.fixture
def checking_factories(pytester):
    pytester.makepyfile(checking=CHECKING_FACTORIES)
    return "checking"


@pytest.mark.redis
def test_asgi_server_redis_3_passes_three_live_shards_as_hosts(pytester, checking_factories):
    run = run_suite(pytester, f"{checking_factories}.redis_shards", "--asgi-server=redis:3",
                    "--asgi-requirement=CAP-1", "--asgi-single-process")
    assert run.status("CAP-1") == "PASS", run.result.outlines[-20:]
    hosts = (pytester.path / "hosts.txt").read_text().split()
    assert len(hosts) == 3 and len(set(hosts)) == 3
    assert not any(accepts(port_of(url)) for url in hosts), "the servers outlived the run"


@pytest.mark.rabbitmq
def test_asgi_server_rabbitmq_with_config_key_host_as_channels_rabbitmq_needs(pytester, checking_factories):
    run = run_suite(pytester, f"{checking_factories}.rabbitmq_host", "--asgi-server=rabbitmq",
                    "--asgi-server-config-key=host", "--asgi-requirement=CAP-1", "--asgi-single-process")
    assert run.status("CAP-1") == "PASS", run.result.outlines[-20:]
    url = (pytester.path / "hosts.txt").read_text()
    assert url.startswith("amqp://guest:guest@127.0.0.1:")
    assert not accepts(port_of(url)), "the broker outlived the run"


@pytest.mark.parametrize(("args", "message"), [
    (["--asgi-server=redis:x"], "--asgi-server='redis:x': the shard count after ':' must be a number"),
    (["--asgi-server=redis:0"], "--asgi-server=redis:0: asked for 0 Redis servers: need at least 1"),
    (["--asgi-server=rabbitmq:2"], "--asgi-server=rabbitmq:2: rabbitmq:2: only one broker per run is supported"),
    (["--asgi-server-config-key=hosts"], "--asgi-server-config-key names where a server's address goes"),
])
def test_asgi_server_mistakes_are_one_clear_line(pytester, args, message):
    result = pytester.runpytest_subprocess(
        "--asgi-layer=reference_layers.inmemory.InMemoryChannelLayer", "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.errlines


def test_asgi_server_without_redis_installed_names_the_package(pytester, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = pytester.runpytest_subprocess(
        "--asgi-layer=reference_layers.inmemory.InMemoryChannelLayer", "-p", "no:cacheprovider",
        "--asgi-server=redis")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert "redis-server not found" in errors[0] and "apt-get install redis-server" in errors[0]
    assert Path("ci/install-servers.sh").name in errors[0]
