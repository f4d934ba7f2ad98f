"""PostgreSQL: one server from Debian's binaries, its cluster made by initdb in a temp dir.

It listens on a free loopback port and on a unix socket in its own temp dir (never the system's
``/var/run/postgresql``). PostgreSQL refuses to run as root, so a root caller runs initdb and the
server as the ``postgres`` user (``setpriv`` execs in place: the pid we stop is the server's).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .environment import find_binary, urls_from_env
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .processes import PROCESS_TIMEOUT, LocalServer, ServerProcess, owned_servers, tail

POSTGRES_URL_ENV = "ASGI_TEST_POSTGRES_URL"
POSTGRES_BIN_DIR_ENV = "ASGI_TEST_POSTGRES_BIN_DIR"
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian's versioned dirs; initdb is not in PATH there
SERVER_USER = "postgres"  # who runs the server when we are root (Debian's package creates it)


@contextlib.contextmanager
def postgres_server(count: int = 1) -> Iterator[Servers]:
    """One PostgreSQL server; ``.url`` is ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    if count != 1:
        raise ServerError(f"postgres:{count}: only one server per run is supported")
    given = urls_from_env(POSTGRES_URL_ENV, ("postgres", "postgresql"))
    if given:
        yield Servers([Server(given[0])])
        return
    bin_dir = postgres_bin_dir()
    with owned_servers([lambda: LocalPostgres(bin_dir)]) as servers:
        yield servers


def postgres_bin_dir() -> str:
    """Where initdb and postgres live: the environment's choice, PATH, or Debian's newest version."""
    chosen = os.environ.get(POSTGRES_BIN_DIR_ENV)
    if not chosen:
        in_path = shutil.which("initdb")
        debian = sorted(glob.glob(POSTGRES_BIN_GLOB), key=lambda d: int(Path(d).parent.name or 0))
        chosen = str(Path(in_path).resolve().parent) if in_path else (debian[-1] if debian else "")
    find_binary("initdb", "postgresql", search_path=chosen or None)
    return chosen


def _as_server_user() -> list[str]:
    """The command prefix that drops root for PostgreSQL (none when we are not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ServerError(f"running as root, and there is no {SERVER_USER!r} user to run PostgreSQL as: "
                          "install the Debian package postgresql, or run unprivileged") from None
    setpriv = find_binary("setpriv", "util-linux")
    return [setpriv, f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--clear-groups", "--"]


class LocalPostgres(LocalServer):
    """postgres on a free loopback port, fsync off, cluster and socket in a temp dir.

    A restart keeps the data directory, as a real PostgreSQL restart does: a database's tables
    are its schema, not traffic in flight. What a restart loses is every session, and with them
    LISTEN registrations, advisory locks and uncommitted work.
    """

    faults = frozenset({Fault.RESTART, Fault.PAUSE, Fault.DROP_CONNECTIONS})
    persists_state = True

    def __init__(self, bin_dir: str):
        workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-postgres-"))
        prefix = _as_server_user()
        if prefix:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        data, port, log = workdir / "data", free_port(), workdir / "postgres.log"
        self.port = port
        initdb = [*prefix, str(Path(bin_dir) / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync"]
        try:
            made = subprocess.run(initdb, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ServerError(f"initdb did not finish within {PROCESS_TIMEOUT} s") from None
        if made.returncode != 0:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ServerError(f"initdb failed (exit {made.returncode}): {made.stderr.strip()[-300:]}")
        command = [*prefix, str(Path(bin_dir) / "postgres"), "-D", str(data), "-p", str(port), "-h", LOOPBACK,
                   "-k", str(workdir), "-c", "fsync=off", "-c", "full_page_writes=off",
                   "-c", "synchronous_commit=off", "-c", "max_connections=200"]
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) would wait for every client to leave.
        process = ServerProcess(command, port, log, stop_signal=signal.SIGINT)
        super().__init__(f"postgresql://postgres@{LOOPBACK}:{port}/postgres", process, workdir, log,
                         f"postgres on port {port}")

    def pause_pids(self) -> list[int]:
        """The postmaster and its backends: a paused postmaster alone would leave sessions answering."""
        from .pausing import process_tree

        return process_tree(super().pause_pids()[0])

    def drop_connections(self) -> int:
        """Terminate every client backend but the one that asks; the data stays."""
        import psycopg  # the layers that need PostgreSQL bring it

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as connection:
                rows = connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()
        except psycopg.Error as exc:
            raise ServerError(f"{self.what}: could not drop connections: {exc}; log: {tail(self.log)}") from None
        return sum(1 for (terminated,) in rows if terminated)
