"""A nats-server for one benchmark run: loopback only, a free port, stopped by its own pid.

The bench starts its own rather than going through asgi_conformance.servers, so the anchor
(channels-nats) needs nothing from the suite but the binary (Debian's ``nats-server``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

BINARY = "nats-server"
START_TIMEOUT = 30.0
# Generous limits: a client falling behind a 1,000-member fan-out must not be cut off as a
# slow consumer, which would measure the server's protection rather than the layer.
MAX_PENDING = 512 * 1024 * 1024


def binary() -> str | None:
    return shutil.which(BINARY) or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if shutil.which(p)), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """Yield the ``nats://`` URL of a fresh server; stop it (by pid) when the block ends."""
    path = binary()
    if path is None:
        raise RuntimeError("nats-server is not installed (ci/install-servers.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as workdir:
        config = f"{workdir}/nats.conf"
        with open(config, "w") as handle:
            handle.write(f"max_pending: {MAX_PENDING}\nmax_payload: 8388608\n")
        port = _free_port()
        process = subprocess.Popen([path, "-a", "127.0.0.1", "-p", str(port), "-c", config],
                                   cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _accepts(port):
                if process.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {process.returncode} on port {port}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not accept on port {port} in {START_TIMEOUT:.0f} s")
                time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def version() -> str | None:
    path = binary()
    if path is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.strip().rpartition(" ")[2].lstrip("v") or None
    return None
