"""Throwaway Redis and RabbitMQ servers for test runs.

Where an address comes from, in order of preference:

1. the environment: ``ASGI_TEST_REDIS_URLS`` (comma-separated) and ``ASGI_TEST_RABBITMQ_URL``,
   so CI with service containers, or a developer with a server already running, starts nothing;
2. testcontainers, but only when a Docker engine answers (checked quickly and quietly);
3. the local binaries (Debian's ``redis-server`` / ``rabbitmq-server``) on free loopback ports,
   with their data in a temp dir.

Every server this module starts is stopped by its own pid when its context ends, also when a
test fails or the run is interrupted (an atexit hook catches what a context did not close).
Servers we started can be restarted in place, on the same port, so layer tests can prove they
survive a server restart mid-traffic.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

# Imported here, before our atexit hook is registered, so at exit our graceful stop runs first
# and mirakuru's SIGKILL sweep of leftover children after it.
import mirakuru
from mirakuru.exceptions import AlreadyRunning, ExecutorError, ProcessFinishedWithError

REDIS_URLS_ENV = "ASGI_TEST_REDIS_URLS"
RABBITMQ_URL_ENV = "ASGI_TEST_RABBITMQ_URL"
RABBITMQ_BIN_DIR_ENV = "ASGI_TEST_RABBITMQ_BIN_DIR"
RABBITMQ_BIN_DIR = "/usr/lib/rabbitmq/bin"  # Debian's launcher; /usr/sbin's wrapper drops root and fails on a temp dir
INSTALL_HINT = "ci/install-servers.sh"
LOOPBACK = "127.0.0.1"

# Bounds both start (until the port accepts) and stop (SIGTERM, then SIGKILL): generous, as a
# busy 2-core CI box may take a while to boot RabbitMQ.
PROCESS_TIMEOUT = 90.0
DOCKER_PROBE_TIMEOUT = 1.0
REDIS_IMAGE = "redis:7-alpine"
RABBITMQ_IMAGE = "rabbitmq:3-alpine"


class ServerError(Exception):
    """A server could not be found, started or restarted; the message is one line for the user."""


# --- handles ---------------------------------------------------------------------------------

class Server:
    """One server's address, and the means to restart it in place (when this process owns it)."""

    restartable = False

    def __init__(self, url: str):
        self.url = url

    def restart(self) -> None:
        raise ServerError(f"{self.url} was given by the environment, not started here: it cannot be restarted")

    def stop(self) -> None:
        """Nothing to stop: somebody else runs this server."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Servers:
    """What the context managers yield: ``.urls`` (and ``.url``, the first), ``.restart()``."""

    def __init__(self, servers: list[Server]):
        self.servers = servers

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def restartable(self) -> bool:
        return all(server.restartable for server in self.servers)

    def restart(self) -> None:
        """Restart every server, one after the other, each on its own port again."""
        for server in self.servers:
            server.restart()

    def __getitem__(self, index: int) -> Server:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    def __repr__(self) -> str:
        return f"<Servers {self.urls}>"


_live: set[Server] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Stop what an interrupted run left behind (mirakuru's own hook then SIGKILLs any stragglers)."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


@contextlib.contextmanager
def _owned(starters) -> Iterator[Servers]:
    """Start servers one by one; stop all that started, whatever happens, when the block ends."""
    started: list[Server] = []
    with contextlib.ExitStack() as stack:  # one failing stop does not keep the others running
        for start in starters:
            server = start()
            _live.add(server)
            stack.callback(_live.discard, server)
            stack.callback(server.stop)
            started.append(server)
        yield Servers(started)


# --- public entry points ---------------------------------------------------------------------

@contextlib.contextmanager
def redis_servers(n: int = 1) -> Iterator[Servers]:
    """``n`` independent Redis servers (shards); ``.urls`` are ``redis://127.0.0.1:PORT``."""
    if n < 1:
        raise ServerError(f"asked for {n} Redis servers: need at least 1")
    given = _urls_from_env(REDIS_URLS_ENV, ("redis", "rediss", "unix"))
    if given:
        if len(given) < n:
            raise ServerError(f"{REDIS_URLS_ENV} lists {len(given)} server(s), {n} independent ones are needed")
        yield Servers([Server(url) for url in given[:n]])
        return
    if docker_engine_answers():
        starters = [_ContainerRedis] * n
    else:
        binary = _find_binary("redis-server", "redis-server")
        starters = [lambda: _LocalRedis(binary)] * n
    with _owned(starters) as servers:
        yield servers


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[Servers]:
    """One RabbitMQ broker; ``.url`` is ``amqp://guest:guest@127.0.0.1:PORT/%2F``."""
    given = _urls_from_env(RABBITMQ_URL_ENV, ("amqp", "amqps"))
    if given:
        if len(given) != 1:
            raise ServerError(f"{RABBITMQ_URL_ENV} must hold one URL, got {len(given)}")
        yield Servers([Server(given[0])])
        return
    if docker_engine_answers():
        with _owned([_ContainerRabbitMQ]) as servers:
            yield servers
    else:
        with local_rabbitmq_server() as servers:
            yield servers


@contextlib.contextmanager
def local_rabbitmq_server(config: str = "") -> Iterator[Servers]:
    """One RabbitMQ node from the machine's binaries, with ``config`` as its rabbitmq.conf
    (e.g. a TLS listener: a container would need the same files mounted)."""
    launcher, epmd = _rabbitmq_binaries()
    with _owned([lambda: _LocalRabbitMQ(launcher, epmd, config)]) as servers:
        yield servers


@contextlib.contextmanager
def local_rabbitmq_cluster(nodes: int = 2) -> Iterator[Servers]:
    """An Erlang cluster of ``nodes`` RabbitMQ nodes from the machine's binaries (one epmd,
    one cookie; each node after the first joins the first); ``.urls`` lists every node,
    and ``cluster[i].stop()`` takes one node down."""
    launcher, epmd_binary = _rabbitmq_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-epmd-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        epmd = _start_epmd(epmd_binary, workdir)
        stack.callback(_close_executor, epmd)
        cluster = _Cluster(epmd.port, secrets.token_hex(16).upper())
        starters = [lambda: _LocalRabbitMQ(launcher, epmd_binary, cluster=cluster) for _ in range(nodes)]
        yield stack.enter_context(_owned(starters))


def _rabbitmq_binaries() -> tuple[str, str]:
    bin_dir = os.environ.get(RABBITMQ_BIN_DIR_ENV) or RABBITMQ_BIN_DIR
    return (_find_binary("rabbitmq-server", "rabbitmq-server", search_path=bin_dir),
            _find_binary("epmd", "rabbitmq-server"))


@contextlib.contextmanager
def servers_for(kind: str, count: int = 1) -> Iterator[list[str]]:
    """The plugin's entry: a list of URLs (``count`` Redis shards, or one RabbitMQ broker)."""
    if kind == "redis":
        manager = redis_servers(count)
    elif kind == "rabbitmq":
        if count != 1:
            raise ServerError(f"rabbitmq:{count}: only one broker per run is supported")
        manager = rabbitmq_server()
    else:
        raise ServerError(f"unknown server kind {kind!r}: expected redis or rabbitmq")
    with manager as servers:
        yield servers.urls


# --- where addresses come from ---------------------------------------------------------------

def _urls_from_env(name: str, schemes: tuple[str, ...]) -> list[str]:
    urls = [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]
    for url in urls:
        if urlsplit(url).scheme not in schemes:
            raise ServerError(f"{name}: {url!r} is not a {' / '.join(s + '://' for s in schemes)} URL")
    return urls


def _find_binary(name: str, package: str, search_path: str | None = None) -> str:
    found = shutil.which(name, path=search_path)
    if found is None:
        where = search_path or "PATH"
        raise ServerError(f"{name} not found in {where}: install the Debian package {package} "
                          f"(apt-get install {package}) or run {INSTALL_HINT}")
    return found


def docker_engine_answers(timeout: float = DOCKER_PROBE_TIMEOUT) -> bool:
    """True when a Docker engine replies to a ping. Quiet, and quick when there is none.

    A docker *client* without an engine is common (CI images, this project's dev box), so the
    cheap check comes first: no DOCKER_HOST and no default socket means no engine, without
    even importing the docker SDK.
    """
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure to reach an engine means "use local binaries"
        return False


def free_port(exclude: set[int] = frozenset()) -> int:
    import port_for

    return port_for.select_random(exclude_ports=set(exclude))


def wait_for_accept(host: str, port: int, timeout: float) -> bool:
    """Poll until ``host:port`` accepts a TCP connection (the readiness probe for both servers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.1)
    return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


# --- local binaries ----------------------------------------------------------------------------

class _Executable(Server):
    """A server process of ours, run by a mirakuru TCPExecutor: ready when its port accepts.

    ``helpers`` are processes already started for it (RabbitMQ's epmd); they are stopped after
    the server. Everything is stopped by its own pid, and the temp dir removed, by :meth:`stop`.
    """

    restartable = True

    def __init__(self, url: str, executor, workdir: Path, log: Path, what: str, helpers=()):
        super().__init__(url)
        self.executor = executor
        self.helpers = list(helpers)
        self.workdir = workdir
        self.log = log
        self.what = what
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        try:
            self.executor.start()
        except AlreadyRunning:
            raise ServerError(f"{self.what}: port {self.executor.port} is already taken by another process") from None
        except ExecutorError as exc:
            raise ServerError(f"{self.what} did not start ({type(exc).__name__}); log: {_tail(self.log)}") from None

    @property
    def pid(self) -> int | None:
        process = self.executor.process
        return process.pid if process is not None else None

    def restart(self) -> None:
        """Stop the process (by its pid) and start it again on the same port, same data dir."""
        _stop_executor(self.executor)
        self._start()

    def stop(self) -> None:
        with contextlib.ExitStack() as cleanup:  # runs in reverse: server, helpers, then the dir
            cleanup.callback(shutil.rmtree, self.workdir, ignore_errors=True)
            for executor in self.helpers:
                cleanup.callback(_close_executor, executor)
            cleanup.callback(_close_executor, self.executor)


def _executor(command: list[str], port: int, log: Path, env: dict[str, str] | None = None):
    # stdout/stderr go to a file: a pipe nobody reads fills up and stalls the server, and an
    # inherited stdout keeps a `$(...)` caller (or a CI step) waiting for EOF.
    log_file = open(log, "ab")  # noqa: SIM115 - closed by _close_executor
    executor = mirakuru.TCPExecutor(command, host=LOOPBACK, port=port, timeout=PROCESS_TIMEOUT, sleep=0.1,
                                    shell=False, envvars=env or {}, stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=subprocess.STDOUT)
    executor.log_file = log_file
    return executor


def _stop_executor(executor) -> None:
    """SIGTERM to the process (its own process group, by pid); SIGKILL if it outstays the timeout."""
    # A server killed from outside (SIGKILL in a test) ends "with an error": fine here.
    with contextlib.suppress(ProcessFinishedWithError):
        executor.stop()


def _close_executor(executor) -> None:
    try:
        _stop_executor(executor)
    finally:
        executor.log_file.close()


class _LocalRedis(_Executable):
    def __init__(self, binary: str):
        workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-redis-"))
        port = free_port()
        log = workdir / "redis.log"
        command = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--dir", str(workdir), "--logfile", str(log)]
        super().__init__(f"redis://{LOOPBACK}:{port}", _executor(command, port, log), workdir, log,
                         f"redis-server on port {port}")


class _Cluster:
    """What the nodes of one local Erlang cluster share: an epmd, a cookie, the first node."""

    def __init__(self, epmd_port: int, cookie: str):
        self.epmd_port = epmd_port
        self.cookie = cookie
        self.first_node: str | None = None


def _start_epmd(binary: str, workdir: Path):
    port = free_port()
    epmd = _executor([binary, "-port", str(port), "-address", LOOPBACK], port, workdir / "epmd.log",
                     {"ERL_EPMD_PORT": str(port)})
    try:
        epmd.start()
    except Exception as exc:  # noqa: BLE001
        _close_executor(epmd)
        raise ServerError(f"epmd on port {port} did not start ({type(exc).__name__}); "
                          f"log: {_tail(workdir / 'epmd.log')}") from None
    return epmd


class _LocalRabbitMQ(_Executable):
    """A RabbitMQ node in a temp dir: alone, with its own epmd on a private port (stopped with
    it), or a node of ``cluster`` (which owns the epmd), joining its first node."""

    def __init__(self, launcher: str, epmd_binary: str, config: str = "", cluster: _Cluster | None = None):
        """``config``: lines for the node's own rabbitmq.conf (a TLS listener, say)."""
        workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-rabbitmq-"))
        if config:
            (workdir / "rabbitmq.conf").write_text(config)
        if cluster is None:
            try:
                helpers = [_start_epmd(epmd_binary, workdir)]
            except ServerError:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            epmd_port = helpers[0].port
        else:
            helpers, epmd_port = [], cluster.epmd_port
            cookie = workdir / ".erlang.cookie"  # in HOME: nodes with one cookie may cluster
            cookie.write_text(cluster.cookie)
            cookie.chmod(0o400)
        node_port = free_port({epmd_port})
        dist_port = free_port({epmd_port, node_port})
        self.env = _rabbitmq_env(workdir, epmd_port, node_port, dist_port)
        self.launcher = launcher
        log = workdir / "log" / f"{self.env['RABBITMQ_NODENAME']}.log"
        executor = _executor([launcher], node_port, workdir / "launcher.log", self.env)
        super().__init__(f"amqp://guest:guest@{LOOPBACK}:{node_port}/%2F", executor, workdir, log,
                         f"rabbitmq-server on port {node_port}", helpers=helpers)
        if cluster is not None:
            if cluster.first_node is None:
                cluster.first_node = self.env["RABBITMQ_NODENAME"]
            else:
                try:
                    self._join(cluster.first_node)
                except BaseException:
                    self.stop()
                    raise

    def _join(self, node: str) -> None:
        for command in (["stop_app"], ["join_cluster", node], ["start_app"]):
            done = subprocess.run([str(Path(self.launcher).with_name("rabbitmqctl")), "-n",
                                   self.env["RABBITMQ_NODENAME"], *command], env={**os.environ, **self.env},
                                  capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
            if done.returncode != 0:
                raise ServerError(f"{self.what}: rabbitmqctl {' '.join(command)} failed: "
                                  f"{(done.stderr or done.stdout)[-500:]}")


def _rabbitmq_env(workdir: Path, epmd_port: int, node_port: int, dist_port: int) -> dict[str, str]:
    """Everything the node writes or reads lives in ``workdir``; it listens on loopback only."""
    node = f"asgi_conformance_{os.getpid()}_{secrets.token_hex(4)}@localhost"
    (workdir / "enabled_plugins").write_text("[].\n")
    (workdir / "log").mkdir()
    return {
        "HOME": str(workdir),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": LOOPBACK,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
        "RABBITMQ_NODE_PORT": str(node_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_FEATURE_FLAGS_FILE": str(workdir / "feature_flags"),
        "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
        # Not the machine's /etc/rabbitmq: a local config must not change what the tests see.
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


# --- testcontainers (only when a Docker engine answers) ----------------------------------------

class _Container(Server):
    """A container with its port bound to a fixed host port, so a restart keeps the address."""

    restartable = True

    def __init__(self, container, internal_port: int, url_format: str, what: str):
        self.container = container
        self.what = what
        host_port = free_port()
        container.with_bind_ports(internal_port, host_port)
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001
            with contextlib.suppress(Exception):
                container.stop()
            raise ServerError(f"{what} container did not start: {type(exc).__name__}: {exc}") from None
        self.host = container.get_container_host_ip()
        self.port = host_port
        super().__init__(url_format.format(host=self.host, port=host_port))

    def restart(self) -> None:
        self.container.get_wrapped_container().restart(timeout=10)
        if not wait_for_accept(self.host, self.port, PROCESS_TIMEOUT):
            raise ServerError(f"{self.what} container did not accept on port {self.port} after a restart")

    def stop(self) -> None:
        self.container.stop()


def _ContainerRedis() -> Server:  # noqa: N802 - a starter, used like the local classes
    from testcontainers.community.redis import RedisContainer

    return _Container(RedisContainer(REDIS_IMAGE), 6379, "redis://{host}:{port}", "Redis")


def _ContainerRabbitMQ() -> Server:  # noqa: N802
    from testcontainers.community.rabbitmq import RabbitMqContainer

    return _Container(RabbitMqContainer(RABBITMQ_IMAGE), 5672,
                      "amqp://guest:guest@{host}:{port}/%2F", "RabbitMQ")
