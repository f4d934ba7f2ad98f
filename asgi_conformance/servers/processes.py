"""Server processes of ours: started from the machine's binaries, stopped by their own pid.

Every server a context starts is stopped when the context ends, also when a test fails or
the run is interrupted; an atexit hook stops what a context never closed, and so does a SIGTERM
or SIGHUP, which would otherwise end the process with no atexit hook run (``termination``).
A process still starting (waiting for its port, before any context holds it) is stopped too.
A stopped server can be started again on the same port and config (a restart in place), its
state forgotten or kept; a running one can be suspended and resumed by pid (the fault handle's
pause).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import mirakuru
import mirakuru.base
import psutil
from mirakuru.exceptions import AlreadyRunning, ExecutorError, ProcessFinishedWithError

from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK
from .pausing import resume_pids, suspend_pids
from .termination import cleanup_before_termination

# Bounds both start (until the port accepts) and stop (SIGTERM, then SIGKILL): generous, as a
# busy 2-core CI box may take a while to boot RabbitMQ.
PROCESS_TIMEOUT = 90.0

Starter = Callable[[], Server]

_live: set[Server] = set()
# Every process started and not yet stopped, whoever started it: a signal that comes while a
# server waits for its port (RabbitMQ takes seconds) finds it in no context yet.
_running: set[ServerProcess] = set()


_NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")


def executor_name_prefix(pid: int) -> str:
    """How the executors of process ``pid`` name what they start (``mirakuru_uuid``, which its
    children inherit): with no digit in it, so no other process's pid is found inside it."""
    return f"asgi-conformance-{str(pid).translate(_NO_DIGITS)}:"


def _sweep_own_stragglers() -> None:
    """SIGKILL what this process's executors started and is still running once its servers were
    stopped (a child a server's launcher left behind): the processes named with this process's
    ``executor_name_prefix``.

    It replaces mirakuru's own atexit sweep, which kills every process whose ``mirakuru_uuid``
    merely *contains* the exiting process's pid: any Python process that imported mirakuru, on
    exit, SIGKILLed servers that other runs started (a pytest run with pid 655 killed a node
    started from pid 6550, or whose uuid4 held "655"), whoever owned them. Our executors' names
    hold no digit, so another process's mirakuru sweep cannot match them either."""
    mine = executor_name_prefix(os.getpid())
    for process in psutil.process_iter():
        try:
            if process.environ().get(mirakuru.base.ENV_UUID, "").startswith(mine):
                process.kill()
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read


# Registered before _stop_leftovers, so at exit it runs after our graceful stop.
atexit.unregister(getattr(mirakuru.base, "cleanup_subprocesses", _sweep_own_stragglers))
atexit.register(_sweep_own_stragglers)


@atexit.register
def _stop_leftovers() -> None:
    """Stop what an interrupted run left behind (at exit, ``_sweep_own_stragglers`` then SIGKILLs
    any stragglers; on SIGTERM or SIGHUP, before the signal ends the process): servers first, as a
    whole (their temp dirs too), then any process still starting or started outside them."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()
    for process in list(_running):
        with contextlib.suppress(Exception):
            process.stop()


@contextlib.contextmanager
def owned_servers(starters: Sequence[Starter]) -> Iterator[Servers]:
    """Start servers one by one; stop all that started, whatever happens, when the block ends."""
    cleanup_before_termination(_stop_leftovers)
    started: list[Server] = []
    with contextlib.ExitStack() as stack:  # one failing stop does not keep the others running
        for start in starters:
            server = start()
            _live.add(server)
            stack.callback(_live.discard, server)
            stack.callback(server.stop)
            started.append(server)
        yield Servers(started)


class ServerProcess:
    """One process run by a mirakuru TCPExecutor: ready when ``port`` accepts on loopback.

    Its stdout/stderr go to ``log``: a pipe nobody reads fills up and stalls the server, and an
    inherited stdout keeps a ``$(...)`` caller (or a CI step) waiting for EOF.
    """

    def __init__(self, command: list[str], port: int, log: Path, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGTERM):
        self.port = port
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed by close()
        self.executor = mirakuru.TCPExecutor(
            command, host=LOOPBACK, port=port, timeout=PROCESS_TIMEOUT, sleep=0.1, shell=False,
            envvars=env or {}, stop_signal=stop_signal, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT)
        # mirakuru names it "<pid>:<uuid4>", which another process's sweep may match (above);
        # its own stop finds the process's children by this name, whatever it is.
        self.executor._uuid = executor_name_prefix(os.getpid()) + uuid.uuid4().hex.translate(_NO_DIGITS)  # noqa: SLF001

    @property
    def pid(self) -> int | None:
        process = self.executor.process
        return process.pid if process is not None else None

    def start(self) -> None:
        """Start it and wait until its port accepts; stopped by a SIGTERM or SIGHUP meanwhile."""
        cleanup_before_termination(_stop_leftovers)
        _running.add(self)
        self.executor.start()

    def stop(self) -> None:
        """``stop_signal`` (SIGTERM unless the kind needs another) to the process (its own process
        group, by pid); SIGKILL if it outstays the timeout."""
        # A server killed from outside (SIGKILL in a test) ends "with an error": fine here.
        with contextlib.suppress(ProcessFinishedWithError):
            self.executor.stop()
        _running.discard(self)

    def close(self) -> None:
        """Stop for good: the log file is closed too."""
        try:
            self.stop()
        finally:
            self._log_file.close()


class LocalServer(Server):
    """A server process of ours in a temp dir ``workdir``, restartable in place, and a fault handle.

    ``helpers`` are processes already started for it (RabbitMQ's epmd); they are stopped after
    the server. Everything is stopped by its own pid, and the temp dir removed, by :meth:`stop`.
    Kinds say how to forget their state (:meth:`forget_state`) and how to drop their clients.
    """

    restartable = True
    faults = frozenset({Fault.RESTART, Fault.PAUSE})
    persists_state = False  # whether a restart can keep the server's state (``keep_state=True``)

    def __init__(self, url: str, process: ServerProcess, workdir: Path, log: Path, what: str,
                 helpers: Sequence[ServerProcess] = ()):
        super().__init__(url)
        self.process = process
        self.helpers = list(helpers)
        self.workdir = workdir
        self.log = log
        self.what = what
        self._suspended: list[int] = []  # pids SIGSTOPped by suspend(), to SIGCONT
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        try:
            self.process.start()
        except AlreadyRunning:
            raise ServerError(f"{self.what}: port {self.process.port} is already taken by another process") from None
        except ExecutorError as exc:
            raise ServerError(f"{self.what} did not start ({type(exc).__name__}); log: {tail(self.log)}") from None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def origin(self) -> str:
        return f"local {self.what}, pid {self.pid}"

    def restart(self, keep_state: bool = False) -> None:
        """Stop the process (by its pid) and start it again on the same port and config, with
        its state forgotten in between (or kept, for a kind that persists it)."""
        if keep_state and not self.persists_state:
            raise ServerError(f"{self.what} runs without persistence: a restart cannot keep its state")
        self.resume()  # a stopped process would sit on SIGTERM until the stop timeout
        self.process.stop()
        if not keep_state:
            self.forget_state()
        self._start()

    def forget_state(self) -> None:
        """Between stop and start: remove what the server would load again (nothing to remove
        for a server that keeps its state in memory only)."""

    def pause_pids(self) -> list[int]:
        """The processes :meth:`suspend` stops: the server's own, by default."""
        if self.pid is None:
            raise ServerError(f"{self.what} is not running: nothing to pause")
        return [self.pid]

    def suspend(self) -> None:
        if self._suspended:
            raise ServerError(f"{self.what} is already suspended")
        self._suspended = suspend_pids(self.pause_pids())

    def resume(self) -> None:
        """SIGCONT what :meth:`suspend` stopped; nothing when it is not suspended."""
        suspended, self._suspended = self._suspended, []
        resume_pids(suspended)

    def stop(self) -> None:
        with contextlib.ExitStack() as cleanup:  # runs in reverse: server, helpers, then the dir
            cleanup.callback(shutil.rmtree, self.workdir, ignore_errors=True)
            for helper in self.helpers:
                cleanup.callback(helper.close)
            cleanup.callback(self.process.close)
            cleanup.callback(self.resume)  # first: a SIGSTOPped server cannot act on SIGTERM


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` of a log, on one line: what a one-line ServerError can show."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])
