"""A run that exits kills only the stragglers its own server executors left, never another run's,
and another run's mirakuru sweep cannot find ours.

mirakuru's own atexit sweep SIGKILLs every process whose ``mirakuru_uuid`` merely contains the
exiting process's pid, so any Python process that had imported it could kill servers another
run started (``servers/processes.py`` replaces that sweep, and names its executors' processes
with no digit). No server needed: sleepers stand in for server processes, named as executors
name them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mirakuru.base import ENV_UUID
from mirakuru.base_env import processes_with_env

from asgi_conformance.servers.processes import ServerProcess, executor_name_prefix

EXITS_ON_A_LINE = ("import sys, asgi_conformance.servers.processes; "
                   "import os; print(os.getpid(), flush=True); sys.stdin.readline()")


def sleeper(name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env={**os.environ, ENV_UUID: name})


def test_an_exiting_run_kills_its_own_stragglers_and_leaves_other_runs_servers_alone():
    run = subprocess.Popen([sys.executable, "-c", EXITS_ON_A_LINE], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    pid = int(run.stdout.readline())
    others = sleeper(f"9{pid}9:00000000-0000-4000-8000-000000000000")  # mirakuru's name, the pid inside it
    own = sleeper(executor_name_prefix(pid) + "abc")  # started by this run's executor
    try:
        run.communicate("\n", timeout=60)
        assert own.wait(timeout=30) == -signal.SIGKILL
        assert others.poll() is None  # mirakuru's own sweep killed this one too
    finally:
        for process in (own, others, run):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_our_servers_names_hold_no_pid_another_runs_mirakuru_sweep_could_find(tmp_path: Path):
    server = ServerProcess([sys.executable, "-c", "import time; time.sleep(120)"], 1, tmp_path / "log")
    name = server.executor.envvars[ENV_UUID]
    assert name.startswith(executor_name_prefix(os.getpid())) and not any(c.isdigit() for c in name)
    stand_in = sleeper(name)
    try:
        assert stand_in.pid in processes_with_env(ENV_UUID, name)  # mirakuru's stop still finds it
        for digits in ("0", "1", "42", str(os.getpid())):  # what another run's exiting pid may be
            assert stand_in.pid not in processes_with_env(ENV_UUID, digits)
    finally:
        stand_in.kill()
        stand_in.wait()
        server.close()
