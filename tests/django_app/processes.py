"""Runs the project as real separate processes: daphne servers and a ``runworker``.

Test machinery, not part of the Django project. Every process gets the layer through the
environment (see settings.py), writes its output to a log file (shown when a test fails),
runs in its own process group, and is stopped by its own pid when the context ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mirakuru
import port_for
from mirakuru.exceptions import ExecutorError

from .groups import WORKER_CHANNEL
from .settings import BACKEND_ENV, CONFIG_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # holds the ``tests`` package
SETTINGS_MODULE = "tests.django_app.settings"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 90.0  # a busy 2-core box may take a while to import Django, Twisted and a layer


def project_env(backend: str, config: dict) -> dict[str, str]:
    """Environment for a subprocess of the project on the given layer."""
    return {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        BACKEND_ENV: backend,
        CONFIG_ENV: json.dumps(config),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Deployment:
    """Two daphne servers and one worker on one layer."""

    env: dict[str, str]
    ports: list[int]
    logs: list[Path]  # daphne 1, daphne 2, runworker
    servers: list[mirakuru.TCPExecutor]
    worker: mirakuru.SimpleExecutor

    def ws_url(self, server: int, room: str) -> str:
        return f"ws://{LOOPBACK}:{self.ports[server]}/ws/chat/{room}/"

    def server_pid(self, server: int) -> int:
        return self.servers[server].process.pid

    @property
    def worker_pid(self) -> int:
        return self.worker.process.pid

    def log_text(self) -> str:
        """Every process's output, for failure messages."""
        return _log_text(self.logs)

    def assert_running(self) -> None:
        for executor, log in zip([*self.servers, self.worker], self.logs):
            if not executor.running():
                raise AssertionError(f"{log.stem} is not running:\n{self.log_text()}")


def _log_text(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}" for log in logs)


def _executor(kind, command: list[str], env: dict[str, str], log, **kwargs):
    return kind(command, cwd=str(PROJECT_ROOT), envvars=env, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, timeout=START_TIMEOUT, **kwargs)


@contextlib.contextmanager
def deployment(backend: str, config: dict, log_dir: Path) -> Iterator[Deployment]:
    """Starts two daphne servers (ready when their port accepts) and ``runworker`` on
    WORKER_CHANNEL, all on the same layer; stops every one of them at the end."""
    env = project_env(backend, config)
    ports = [port_for.select_random(), port_for.select_random()]
    while ports[1] == ports[0]:
        ports[1] = port_for.select_random()
    logs = [log_dir / "daphne-1.log", log_dir / "daphne-2.log", log_dir / "runworker.log"]
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(log.open("w")) for log in logs]
        servers = [
            _executor(mirakuru.TCPExecutor,
                      [sys.executable, "-m", "daphne", "-b", LOOPBACK, "-p", str(port),
                       "tests.django_app.asgi:application"],
                      env, output, host=LOOPBACK, port=port)
            for port, output in zip(ports, outputs)
        ]
        # Nothing to wait for: WORKER_CHANNEL is a normal channel, so a send made before the
        # worker's first receive waits in the layer for it.
        worker = _executor(mirakuru.SimpleExecutor,
                           [sys.executable, "-m", "django", "runworker", WORKER_CHANNEL], env, outputs[2])
        executors = [*servers, worker]
        for executor in executors:
            stack.callback(executor.kill)
            stack.callback(executor.stop)
        with ThreadPoolExecutor(len(executors)) as pool:  # start them side by side
            for future in [pool.submit(executor.start) for executor in executors]:
                try:
                    future.result()
                except ExecutorError as exc:
                    raise RuntimeError(f"could not start {exc}:\n{_log_text(logs)}") from exc
        yield Deployment(env, ports, logs, servers, worker)
