"""Redis Cluster: ``n`` masters with one replica each, on loopback, so a layer can be tested on it.

2n ``redis-server`` processes in cluster mode (each in its own temp dir, ``cluster-node-timeout``
small so a failover takes seconds), joined by ``redis-cli --cluster create --cluster-replicas 1``.
The whole cluster is one :class:`Server` of the set: the layer gets one ``hosts`` entry in its
cluster form (``config_entry``), and the fault handle offers what a cluster can do:

- ``failover()``: SIGKILL one master by pid, wait until its replica is promoted and the cluster
  state is ok again, then start the killed node again (it rejoins as a replica), so the next
  failover finds every master replicated;
- ``drop_connections()``: every node closes its clients' connections.

Restart and pause of the whole cluster are not offered: a cluster restarted without its state is
not a cluster any more, and a paused cluster fails itself over when it wakes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirakuru.exceptions import AlreadyRunning, ExecutorError

from .environment import find_binary
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .processes import ServerProcess, owned_servers, tail
from .redis_admin import drop_redis_clients, redis_text

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a dead master is failed over ~2-3 s later
SETTLE_TIMEOUT = 60.0  # seconds for the cluster to be created, or to settle after a failover
POLL = 0.1  # seconds between looks at the cluster's state
LOOK_TIMEOUT = 2.0  # seconds for one node to answer a look
MIN_MASTERS = 3  # what redis-cli --cluster create accepts
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + this


@dataclass
class ClusterNode:
    """One redis-server of the cluster: its port, process and temp dir."""

    port: int
    process: ServerProcess
    workdir: Path

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}"


@dataclass(frozen=True)
class NodeLine:
    """One line of ``CLUSTER NODES``, as far as the handle needs it."""

    port: int
    master: bool
    failed: bool
    connected: bool
    has_slots: bool


class RedisCluster(Server):
    """A cluster of ``masters`` masters and as many replicas, started here and stopped by pid."""

    restartable = True
    faults = frozenset({Fault.FAILOVER, Fault.DROP_CONNECTIONS})

    def __init__(self, masters: int):
        if masters < MIN_MASTERS:
            raise ServerError(f"redis-cluster:{masters}: a Redis Cluster needs at least {MIN_MASTERS} masters "
                              f"(try redis-cluster:{MIN_MASTERS})")
        self._server = find_binary("redis-server", "redis-server")
        self._cli = find_binary("redis-cli", "redis-tools")
        self.nodes: list[ClusterNode] = []
        self._killed = 0  # failovers so far: which master the next one kills
        try:
            for _ in range(2 * masters):
                self.nodes.append(self._start_node())
            self._create(masters)
        except BaseException:
            self.stop()
            raise
        super().__init__(self.nodes[0].url)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def config_entry(self) -> dict[str, Any]:
        """The layer's ``hosts`` entry for this cluster: its cluster form, every node a startup URL."""
        return {"cluster": self.urls}

    def entry_elsewhere(self, fresh_port: Callable[[], int]) -> tuple[Any, list[int]]:
        """The cluster form with every startup node on a port where nothing listens (FAULT-1)."""
        ports = [fresh_port() for _ in self.nodes]
        return {"cluster": [f"redis://{LOOPBACK}:{port}" for port in ports]}, ports

    # --- starting ---------------------------------------------------------------------------
    def _start_node(self) -> ClusterNode:
        workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-redis-cluster-"))
        port = self._free_port_pair()
        log = workdir / "redis.log"
        command = [self._server, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--dir", str(workdir), "--logfile", str(log),
                   "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                   "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                   "--repl-diskless-sync-delay", "0"]  # a replica (re)joining syncs at once, not 5 s later
        node = ClusterNode(port, ServerProcess(command, port, log), workdir)
        self._start_process(node)
        return node

    def _free_port_pair(self) -> int:
        """A free port whose cluster bus port (+10000) is free too."""
        taken = {node.port for node in self.nodes} | {node.port + BUS_OFFSET for node in self.nodes}
        for _ in range(100):
            port = free_port(taken)
            taken.add(port)
            if port + BUS_OFFSET < 65536 and port + BUS_OFFSET not in taken and _bindable(port + BUS_OFFSET):
                return port
        raise ServerError("found no free port pair (port, port + 10000) for a Redis cluster node")

    def _start_process(self, node: ClusterNode) -> None:
        try:
            node.process.start()
        except AlreadyRunning:
            raise ServerError(f"redis-server (cluster) port {node.port} is already taken by another process") from None
        except ExecutorError as exc:
            raise ServerError(f"redis-server (cluster) on port {node.port} did not start ({type(exc).__name__}); "
                              f"log: {tail(node.process.log)}") from None

    def _create(self, masters: int) -> None:
        command = [self._cli, "--cluster", "create", *(node.address for node in self.nodes),
                   "--cluster-replicas", "1", "--cluster-yes"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=SETTLE_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise ServerError(f"redis-cli --cluster create took over {SETTLE_TIMEOUT:g} s") from None
        if done.returncode != 0:
            last = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise ServerError(f"redis-cli --cluster create failed: {last}")
        self._settle(masters, "after it was created")

    # --- looking --------------------------------------------------------------------------------
    @staticmethod
    def _cli_reply(node: ClusterNode, *command: str) -> str | None:
        """A command's text reply, or None if the node does not answer."""
        try:
            return redis_text(node.url, *command, timeout=LOOK_TIMEOUT)
        except ServerError:
            return None

    def _live_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if _running(node.process)]

    def _node_lines(self, node: ClusterNode) -> list[NodeLine] | None:
        reply = self._cli_reply(node, "CLUSTER", "NODES")
        if not reply:
            return None
        lines = []
        for line in reply.strip().splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            port = int(fields[1].split("@")[0].rpartition(":")[2] or 0)
            lines.append(NodeLine(port, "master" in flags, "fail" in flags or "fail?" in flags,
                                  fields[7] == "connected", len(fields) > 8))
        return lines

    def _settled(self, masters: int) -> bool:
        """Every live node says: state ok, ``masters`` masters serving slots, each live node
        connected and not failed, every live replica's link to its master up."""
        live = self._live_nodes()
        live_ports = {node.port for node in live}
        for node in live:
            info = self._cli_reply(node, "CLUSTER", "INFO")
            if info is None or "cluster_state:ok" not in info:
                return False
            lines = self._node_lines(node)
            if lines is None:
                return False
            serving = [line for line in lines if line.master and line.has_slots and not line.failed]
            if len(serving) != masters:
                return False
            if any(line.failed or not line.connected for line in lines if line.port in live_ports):
                return False
            replication = self._cli_reply(node, "INFO", "replication") or ""
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        return True

    def _settle(self, masters: int, when: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not self._settled(masters):
            if time.monotonic() > deadline:
                raise ServerError(f"the Redis cluster did not settle within {SETTLE_TIMEOUT:g} s {when}")
            time.sleep(POLL)

    def _masters(self) -> list[ClusterNode]:
        for node in self._live_nodes():
            lines = self._node_lines(node)
            if lines:
                ports = {line.port for line in lines if line.master and line.has_slots and not line.failed}
                return [candidate for candidate in self.nodes if candidate.port in ports]
        raise ServerError("no node of the Redis cluster answers")

    # --- faults -----------------------------------------------------------------------------------
    def failover(self) -> None:
        """SIGKILL a master (by pid), return once its replica serves its slots and the cluster state
        is ok; the killed node is started again first, to rejoin as a replica."""
        masters = self._masters()
        victim = masters[self._killed % len(masters)]
        self._killed += 1
        pid = victim.process.pid
        if pid is None:
            raise ServerError(f"redis-server (cluster) on port {victim.port} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while victim in self._masters() or not any(node.port != victim.port for node in self._masters()):
            if time.monotonic() > deadline:
                raise ServerError(f"no replica took over from the master on port {victim.port} "
                                  f"within {SETTLE_TIMEOUT:g} s")
            time.sleep(POLL)
        victim.process.stop()  # reaps the killed process; the node's nodes.conf stays for its rejoin
        self._start_process(victim)
        self._settle(len(masters), "after a failover")

    def drop_connections(self) -> int:
        return sum(drop_redis_clients(node.url) for node in self._live_nodes())

    def stop(self) -> None:
        with contextlib.ExitStack() as cleanup:
            for node in self.nodes:
                cleanup.callback(shutil.rmtree, node.workdir, ignore_errors=True)
                cleanup.callback(node.process.close)

    def __repr__(self) -> str:
        return f"<RedisCluster {' '.join(node.address for node in self.nodes)}>"


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _running(process: ServerProcess) -> bool:
    """Started and not exited (a SIGKILLed process not yet reaped counts as exited)."""
    popen = process.executor.process
    return popen is not None and popen.poll() is None


@contextlib.contextmanager
def redis_cluster(masters: int = MIN_MASTERS) -> Iterator[Servers]:
    """A Redis Cluster of ``masters`` masters with a replica each, one server to the fault handle;
    ``.config_entries`` is the layer's ``hosts`` value for it (its cluster form)."""
    with owned_servers([lambda: RedisCluster(masters)]) as servers:
        yield servers
