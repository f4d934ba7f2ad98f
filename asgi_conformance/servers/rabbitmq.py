"""RabbitMQ: one broker, from the environment, a container or the machine's binaries.

A local node runs from Debian's launcher in a temp dir that holds everything it reads or
writes, listening on loopback only, with its own epmd on a private port, or with an epmd it
shares with other nodes (an Erlang cluster: our tests build one in ``tests/rabbitmq_nodes.py``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from .containers import ContainerServer, use_containers
from .environment import find_binary, urls_from_env
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .pausing import process_tree
from .processes import PROCESS_TIMEOUT, LocalServer, ServerProcess, owned_servers, tail

RABBITMQ_URL_ENV = "ASGI_TEST_RABBITMQ_URL"
RABBITMQ_BIN_DIR_ENV = "ASGI_TEST_RABBITMQ_BIN_DIR"
RABBITMQ_BIN_DIR = "/usr/lib/rabbitmq/bin"  # Debian's launcher; /usr/sbin's wrapper drops root and fails on a temp dir
RABBITMQ_IMAGE = "rabbitmq:3"  # ci/debian_rootfs.py builds it from Debian's rabbitmq-server
# Inside a container: the node's files, in the container's own filesystem (a fresh one forgets them).
CONTAINER_WORKDIR = PurePosixPath("/var/lib/asgi-conformance-rabbitmq")


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[Servers]:
    """One RabbitMQ broker; ``.url`` is ``amqp://guest:guest@127.0.0.1:PORT/%2F``."""
    given = urls_from_env(RABBITMQ_URL_ENV, ("amqp", "amqps"))
    if given:
        if len(given) != 1:
            raise ServerError(f"{RABBITMQ_URL_ENV} must hold one URL, got {len(given)}")
        yield Servers([Server(given[0])])
        return
    if use_containers():
        with owned_servers([ContainerRabbitMQ]) as servers:
            yield servers
    else:
        with local_rabbitmq_server() as servers:
            yield servers


@contextlib.contextmanager
def local_rabbitmq_server(config: str = "") -> Iterator[Servers]:
    """One RabbitMQ node from the machine's binaries, with ``config`` as its rabbitmq.conf
    (e.g. a TLS listener: a container would need the same files mounted)."""
    binaries = rabbitmq_binaries()
    with owned_servers([lambda: LocalRabbitMQ(binaries, config)]) as servers:
        yield servers


@dataclass(frozen=True)
class RabbitMQBinaries:
    """The node launcher and the epmd it needs; rabbitmqctl sits beside the launcher."""

    launcher: str
    epmd: str

    @property
    def ctl(self) -> str:
        return str(Path(self.launcher).with_name("rabbitmqctl"))


def rabbitmq_binaries() -> RabbitMQBinaries:
    bin_dir = os.environ.get(RABBITMQ_BIN_DIR_ENV) or RABBITMQ_BIN_DIR
    return RabbitMQBinaries(find_binary("rabbitmq-server", "rabbitmq-server", search_path=bin_dir),
                            find_binary("epmd", "rabbitmq-server"))


@dataclass(frozen=True)
class SharedEpmd:
    """An epmd several nodes register with, and the cookie that lets them talk to each other."""

    port: int
    cookie: str


def start_epmd(binary: str, workdir: Path) -> ServerProcess:
    """An Erlang port mapper on a private loopback port, its log in ``workdir``."""
    port = free_port()
    log = workdir / "epmd.log"
    epmd = ServerProcess([binary, "-port", str(port), "-address", LOOPBACK], port, log, {"ERL_EPMD_PORT": str(port)})
    try:
        epmd.start()
    except Exception as exc:  # noqa: BLE001
        epmd.close()
        raise ServerError(f"epmd on port {port} did not start ({type(exc).__name__}); log: {tail(log)}") from None
    return epmd


class LocalRabbitMQ(LocalServer):
    """A RabbitMQ node in a temp dir: alone, with its own epmd (stopped with it), or registered
    with ``shared_epmd`` (whose owner stops it) and its cookie, so it may join other nodes.

    As a fault handle: a restart forgets its queues, exchanges and bindings by removing its
    mnesia dir (``keep_state=True`` keeps them); a pause stops the launcher, the Erlang VM and
    the VM's helpers, but not epmd: AMQP clients never talk to epmd, and a shared one serves
    other nodes, which pausing this one must not stall.
    """

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})
    persists_state = True

    def __init__(self, binaries: RabbitMQBinaries, config: str = "", shared_epmd: SharedEpmd | None = None):
        """``config``: lines for the node's own rabbitmq.conf (a TLS listener, say)."""
        workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-rabbitmq-"))
        if config:
            (workdir / "rabbitmq.conf").write_text(config)
        helpers: list[ServerProcess] = []
        if shared_epmd is None:
            try:
                helpers.append(start_epmd(binaries.epmd, workdir))
            except ServerError:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            epmd_port = helpers[0].port
        else:
            epmd_port = shared_epmd.port
            cookie = workdir / ".erlang.cookie"  # in HOME: nodes with one cookie may cluster
            cookie.write_text(shared_epmd.cookie)
            cookie.chmod(0o400)
        node_port = free_port({epmd_port})
        dist_port = free_port({epmd_port, node_port})
        self.binaries = binaries
        self.env = rabbitmq_env(workdir, epmd_port, node_port, dist_port)
        log = workdir / "log" / f"{self.node_name}.log"
        process = ServerProcess([binaries.launcher], node_port, workdir / "launcher.log", self.env)
        super().__init__(f"amqp://guest:guest@{LOOPBACK}:{node_port}/%2F", process, workdir, log,
                         f"rabbitmq-server on port {node_port}", helpers=helpers)

    @property
    def node_name(self) -> str:
        return self.env["RABBITMQ_NODENAME"]

    def forget_state(self) -> None:
        """A fresh node at the next start: no mnesia (queues, exchanges, bindings, users), no
        feature flags recorded by the old one; same name, port and config."""
        shutil.rmtree(self.env["RABBITMQ_MNESIA_BASE"], ignore_errors=True)
        Path(self.env["RABBITMQ_FEATURE_FLAGS_FILE"]).unlink(missing_ok=True)

    def pause_pids(self) -> list[int]:
        return process_tree(super().pause_pids()[0])

    def drop_connections(self) -> int:
        return drop_rabbitmq_clients(self.ctl)

    def ctl(self, *command: str) -> str:
        """Run ``rabbitmqctl command...`` against this node; its output, or a ServerError saying why not."""
        done = subprocess.run([self.binaries.ctl, "-n", self.node_name, *command], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
        if done.returncode != 0:
            raise ServerError(f"{self.what}: rabbitmqctl {' '.join(command)} failed: "
                              f"{(done.stderr or done.stdout)[-500:]}")
        return done.stdout


def rabbitmq_env(workdir: Path, epmd_port: int, node_port: int, dist_port: int) -> dict[str, str]:
    """Everything the node writes or reads lives in ``workdir``; it listens on loopback only."""
    (workdir / "enabled_plugins").write_text("[].\n")
    (workdir / "log").mkdir()
    return node_env(workdir, epmd_port, node_port, dist_port)


def node_env(workdir: PurePath, epmd_port: int, node_port: int, dist_port: int) -> dict[str, str]:
    """The node's environment: its name, ports and files (in ``workdir``, which holds
    ``enabled_plugins`` and ``log/``), on loopback only."""
    node = f"asgi_conformance_{os.getpid()}_{secrets.token_hex(4)}@localhost"
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


# The broker closes every client connection, in every vhost; the reason is what clients are told.
CLOSE_ALL_CONNECTIONS = ("close_all_connections", "--global", "asgi-conformance: dropped connections fault")
# A connection the broker already closed stays listed, in these states, until its client answers
# the close: close_all_connections would count it again, so the drop counts from the list.
CLOSING_STATES = frozenset({"closing", "closed"})


def drop_rabbitmq_clients(ctl: Callable[..., str]) -> int:
    """Close every client connection through ``ctl`` (rabbitmqctl's arguments -> its output);
    returns how many were open when the drop began (one that opens meanwhile is closed too, uncounted)."""
    states = [line.strip() for line in ctl("--silent", "list_connections", "state").splitlines() if line.strip()]
    ctl(*CLOSE_ALL_CONNECTIONS)
    return sum(1 for state in states if state not in CLOSING_STATES)


class ContainerRabbitMQ(ContainerServer):
    """A RabbitMQ node in a container on the host's network: its own epmd, node and distribution
    ports on loopback (free on the host), its files in the container; its clients are dropped by
    the container's own rabbitmqctl. A restart that keeps the state restarts the container in place."""

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})
    persists_state = True

    def __init__(self) -> None:
        super().__init__(RABBITMQ_IMAGE, self._command, self._node_env, "amqp://guest:guest@{host}:{port}/%2F",
                         "RabbitMQ")

    @staticmethod
    def _node_env(node_port: int) -> dict[str, str]:
        epmd_port = free_port({node_port})
        return node_env(CONTAINER_WORKDIR, epmd_port, node_port, free_port({node_port, epmd_port}))

    @staticmethod
    def _command(node_port: int) -> list[str]:
        # What rabbitmq_env writes on this machine, written in the container before the node starts.
        return ["sh", "-c", f"mkdir -p {CONTAINER_WORKDIR}/log && echo '[].' > {CONTAINER_WORKDIR}/enabled_plugins"
                            " && exec rabbitmq-server"]

    def ctl(self, *command: str) -> str:
        node = self.env["RABBITMQ_NODENAME"]
        code, output = self.container.get_wrapped_container().exec_run(
            ["rabbitmqctl", "-n", node, *command], environment=self.env)
        text: str = output.decode(errors="replace")
        if code != 0:
            raise ServerError(f"{self.what}: rabbitmqctl {' '.join(command)} failed: {text[-500:]}")
        return text

    def drop_connections(self) -> int:
        return drop_rabbitmq_clients(self.ctl)
