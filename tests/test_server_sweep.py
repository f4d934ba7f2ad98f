"""A run that exits kills only the stragglers its own server executors left, never another run's.

mirakuru's own atexit sweep SIGKILLs every process whose ``mirakuru_uuid`` merely contains the
exiting process's pid, so any Python process that had imported it could kill servers another
run started (``servers/processes.py`` replaces that sweep). No server needed: sleepers stand in
for server processes, named as mirakuru names them (``<pid of the starter>:<uuid4>``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

EXITS_ON_A_LINE = ("import sys, asgi_conformance.servers.processes; "
                   "import os; print(os.getpid(), flush=True); sys.stdin.readline()")


def sleeper(mirakuru_uuid: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            env={**os.environ, "mirakuru_uuid": mirakuru_uuid})


def test_an_exiting_run_kills_its_own_stragglers_and_leaves_other_runs_servers_alone():
    run = subprocess.Popen([sys.executable, "-c", EXITS_ON_A_LINE], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    pid = run.stdout.readline().strip()
    others = sleeper(f"9{pid}9:00000000-0000-4000-8000-000000000000")  # the pid only inside the name
    own = sleeper(f"{pid}:00000000-0000-4000-8000-000000000000")  # started by this run's executor
    try:
        run.communicate("\n", timeout=60)
        assert own.wait(timeout=30) == -signal.SIGKILL
        assert others.poll() is None  # mirakuru's own sweep killed this one too
    finally:
        for process in (own, others, run):
            if process.poll() is None:
                process.kill()
                process.wait()
