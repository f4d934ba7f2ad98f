"""Redis Sentinel: a master, one replica and three sentinels on loopback ports, as one server.

Why one handle for five processes: a layer sees a Sentinel set as one shard, named in its
config by the sentinels' addresses and the master's name (channels_redis's ``hosts`` form,
:meth:`SentinelSet.config_entry`). The fault handle acts on the set: ``failover()`` SIGKILLs the
master by pid, asks a sentinel to promote the replica at once, waits until every sentinel names
the new master, then starts the old node again as its replica, so the set can fail over again.
``restart()`` and ``pause()`` act on both data nodes with the sentinels told to wait meanwhile:
a failover there would turn a restart (state lost) or a pause (nothing lost) into another fault.

Settings that make a failover take about a second: sentinels judge a node down after
``DOWN_AFTER_MS``, and replicas sync over the socket at once (diskless, no delay).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .environment import find_binary
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .pausing import resume_pids, suspend_pids
from .processes import ServerProcess, owned_servers, tail
from .redis_admin import drop_redis_clients
from .sentinel_admin import Reply, ReplyError, ask, info_field

MASTER_NAME = "asgi-conformance"
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 1000  # a node silent this long is down: a failover starts about a second after a kill
QUIET_DOWN_AFTER_MS = 600_000  # while we restart or pause the nodes on purpose: nobody is down
FAILOVER_TIMEOUT_MS = 3000
SETTLE_TIMEOUT = 30.0  # seconds for the set to agree on a master, a replica to sync, a sentinel to see
POLL = 0.05
SENTINEL_KWARGS = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}


class RedisNode:
    """One redis-server of the set: its port and log stay, its process is new at each start
    (a restarted node may follow another master)."""

    def __init__(self, binary: str, workdir: Path, taken: set[int]):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port(taken)
        taken.add(self.port)
        self.log = workdir / f"redis-{self.port}.log"
        self.process: ServerProcess | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, replica_of: int | None = None) -> None:
        """Start with no data (nothing persists); as a replica of the node on ``replica_of``."""
        command = [self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--dir", str(self.workdir), "--logfile", str(self.log),
                   "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            command += ["--replicaof", LOOPBACK, str(replica_of)]
        self.stop()
        self.process = ServerProcess(command, self.port, self.log)
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001 - mirakuru's start errors, told in one line
            raise ServerError(f"redis-server on port {self.port} did not start ({type(exc).__name__}); "
                              f"log: {tail(self.log)}") from None

    def kill(self) -> None:
        """SIGKILL by pid: what a crashed machine looks like to its clients and sentinels."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.close()

    def wait_synced(self) -> None:
        """Until this replica's link to its master is up (its first sync done)."""
        _until(lambda: info_field(self.port, "replication", "master_link_status") == "up",
               f"the replica on port {self.port} to sync with its master")


class SentinelSet(Server):
    """A master, a replica and three sentinels; ``url`` is the current master's address."""

    restartable = True
    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS, Fault.FAILOVER})

    def __init__(self, binary: str):
        self.workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-sentinel-"))
        taken: set[int] = set()
        self.nodes = [RedisNode(binary, self.workdir, taken) for _ in range(2)]
        self.sentinel_ports = [free_port(taken) for _ in range(SENTINELS)]
        taken.update(self.sentinel_ports)
        self.sentinels: list[ServerProcess] = []
        self.master, self.replica = self.nodes
        self.last_failover_seconds: float | None = None  # kill to all sentinels naming the new master
        self._suspended: list[int] = []
        super().__init__(f"redis://{LOOPBACK}:{self.master.port}")
        try:
            self._start(binary)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: str) -> None:
        self.master.start()
        self.replica.start(replica_of=self.master.port)
        self.replica.wait_synced()
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"
            conf.write_text("\n".join([
                f"port {port}", f"bind {LOOPBACK}", "daemonize no", f"dir {self.workdir}",
                f"logfile {self.workdir / f'sentinel-{port}.log'}",
                f"sentinel monitor {MASTER_NAME} {LOOPBACK} {self.master.port} {QUORUM}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER_NAME} 1", ""]))
            process = ServerProcess([binary, str(conf), "--sentinel"], port, self.workdir / f"sentinel-{port}.out")
            self.sentinels.append(process)
            try:
                process.start()
            except Exception as exc:  # noqa: BLE001 - mirakuru's start errors, told in one line
                raise ServerError(f"redis sentinel on port {port} did not start ({type(exc).__name__}); "
                                  f"log: {tail(self.workdir / f'sentinel-{port}.log')}") from None
        self._wait_agreed()

    # --- what the layer is told -------------------------------------------------------------
    def config_entry(self) -> Any:
        """channels_redis's Sentinel form of a ``hosts`` entry."""
        return {"sentinels": [(LOOPBACK, port) for port in self.sentinel_ports], "master_name": MASTER_NAME,
                "sentinel_kwargs": dict(SENTINEL_KWARGS)}

    def entry_elsewhere(self, fresh_port: Callable[[], int]) -> tuple[Any, list[int]]:
        """The same form with every sentinel moved to a port where nothing listens."""
        ports = [fresh_port() for _ in self.sentinel_ports]
        return {**self.config_entry(), "sentinels": [(LOOPBACK, port) for port in ports]}, ports

    # --- the set's state, as the sentinels see it ---------------------------------------------
    def _master_port_by(self, sentinel: int) -> int | None:
        reply = ask(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(str(reply[1])) if isinstance(reply, list) and len(reply) == 2 else None

    def _replicas_seen_by(self, sentinel: int) -> list[dict[str, str]]:
        return _records(ask(sentinel, "SENTINEL", "REPLICAS", MASTER_NAME))

    def _wait_agreed(self) -> None:
        """Until every sentinel names our master, knows the others, and sees the replica up."""
        def agreed(port: int) -> bool:
            master = _records([ask(port, "SENTINEL", "MASTER", MASTER_NAME)])[0]
            replicas = self._replicas_seen_by(port)
            return (int(master["port"]) == self.master.port and "s_down" not in master["flags"]
                    and int(master["num-other-sentinels"]) == SENTINELS - 1
                    and any(int(r["port"]) == self.replica.port and "s_down" not in r["flags"]
                            and r.get("master-link-status") == "ok" for r in replicas))
        _until(lambda: all(agreed(port) for port in self.sentinel_ports),
               f"the sentinels to agree on the master on port {self.master.port} and its replica")

    def _set_down_after(self, milliseconds: int) -> None:
        for port in self.sentinel_ports:
            ask(port, "SENTINEL", "SET", MASTER_NAME, "down-after-milliseconds", str(milliseconds))

    @contextlib.contextmanager
    def _sentinels_patient(self) -> Iterator[None]:
        """The sentinels take nobody for down meanwhile, and judge again once all answer."""
        self._set_down_after(QUIET_DOWN_AFTER_MS)
        try:
            yield
        finally:
            if not self._suspended:
                self._wait_agreed()  # fresh pings first: the long silence must not count
                self._set_down_after(DOWN_AFTER_MS)

    # --- the fault handle ---------------------------------------------------------------------
    def restart(self, keep_state: bool = False) -> None:
        """Both nodes stopped and started again with no data, the same master: the state is lost."""
        if keep_state:
            raise ServerError("the Sentinel set runs without persistence: a restart cannot keep its state")
        self.resume()
        with self._sentinels_patient():
            self.replica.stop()
            self.master.start()
            self.replica.start(replica_of=self.master.port)
            self.replica.wait_synced()

    def suspend(self) -> None:
        if self._suspended:
            raise ServerError("the Sentinel set is already suspended")
        self._set_down_after(QUIET_DOWN_AFTER_MS)
        self._suspended = suspend_pids([pid for pid in (self.master.pid, self.replica.pid) if pid is not None])

    def resume(self) -> None:
        suspended, self._suspended = self._suspended, []
        if suspended:
            resume_pids(suspended)
            self._wait_agreed()
            self._set_down_after(DOWN_AFTER_MS)

    def drop_connections(self) -> int:
        return drop_redis_clients(self.url)

    def failover(self) -> None:
        """SIGKILL the master, have the replica promoted, and start the old master as its replica."""
        self.resume()
        old, new = self.master, self.replica
        started = time.monotonic()
        old.kill()
        _until(lambda: self._ask_failover(), "a sentinel to start the failover")
        _until(lambda: all(self._master_port_by(port) == new.port for port in self.sentinel_ports)
               and info_field(new.port, "replication", "role") == "master",
               f"the sentinels to name the replica on port {new.port} the master")
        self.last_failover_seconds = time.monotonic() - started
        self.master, self.replica = new, old
        self.url = f"redis://{LOOPBACK}:{new.port}"
        old.start(replica_of=new.port)
        old.wait_synced()
        self._wait_agreed()

    def _ask_failover(self) -> bool:
        """Ask the first sentinel to fail over now (not after ``DOWN_AFTER_MS``): True once one
        runs, whoever started it."""
        try:
            ask(self.sentinel_ports[0], "SENTINEL", "FAILOVER", MASTER_NAME)
        except ReplyError as exc:
            return str(exc).startswith("INPROG")  # NOGOODSLAVE: the replica is not judged good yet
        return True

    def stop(self) -> None:
        with contextlib.ExitStack() as cleanup:  # runs in reverse: sentinels, nodes, then the dir
            cleanup.callback(shutil.rmtree, self.workdir, ignore_errors=True)
            for node in self.nodes:
                cleanup.callback(node.stop)
            for process in self.sentinels:
                cleanup.callback(process.close)
            cleanup.callback(self.resume_quietly)

    def resume_quietly(self) -> None:
        suspended, self._suspended = self._suspended, []
        resume_pids(suspended)

    def __repr__(self) -> str:
        return f"<SentinelSet master={self.master.port} sentinels={self.sentinel_ports}>"


@contextlib.contextmanager
def sentinel_sets(n: int = 1) -> Iterator[Servers]:
    """``n`` Sentinel sets (each one shard of the layer); the local ``redis-server`` runs them all."""
    if n < 1:
        raise ServerError(f"asked for {n} Sentinel sets: need at least 1")
    binary = find_binary("redis-server", "redis-server")
    with owned_servers([lambda: SentinelSet(binary)] * n) as servers:
        yield servers


def _records(reply: Reply) -> list[dict[str, str]]:
    """SENTINEL MASTER/REPLICAS replies (flat [name, value, ...] lists) as dicts."""
    if not isinstance(reply, list):
        return []
    return [{str(k): str(v) for k, v in zip(item[::2], item[1::2])} for item in reply if isinstance(item, list)]


def _until(condition: Any, what: str) -> None:
    """Poll ``condition()`` until true; ServerError after ``SETTLE_TIMEOUT``. A node that is not
    up yet makes ``condition`` raise ServerError: that counts as not yet."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = ""
    while True:
        try:
            if condition():
                return
        except ServerError as exc:
            last = f" (last: {exc})"
        if time.monotonic() > deadline:
            raise ServerError(f"waited {SETTLE_TIMEOUT:g} s for {what}{last}")
        time.sleep(POLL)
