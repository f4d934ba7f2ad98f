"""Servers in containers, through testcontainers, used only when a Docker engine answers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .handles import Fault, Server, ServerError
from .network import free_port, wait_for_accept
from .processes import PROCESS_TIMEOUT

DOCKER_PROBE_TIMEOUT = 1.0


def docker_engine_answers(timeout: float = DOCKER_PROBE_TIMEOUT) -> bool:
    """True when a Docker engine replies to a ping. Quiet, and quick when there is none.

    A docker *client* without an engine is common (CI images, this project's dev box), so the
    cheap check comes first: no DOCKER_HOST and no default socket means no engine, without
    even importing the docker SDK.
    """
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure to reach an engine means "use local binaries"
        return False


class ContainerServer(Server):
    """A container with its port bound to a fixed host port, so a restart keeps the address.

    A fault handle too: a restart that loses the state replaces the container by a fresh one
    from ``make_container`` on the same host port (one that keeps it restarts the container
    in place, its filesystem kept); a pause freezes every process in it (``docker pause``, the
    cgroup freezer: SIGSTOP's container form). Kinds add how to drop their clients.
    """

    restartable = True
    faults = frozenset({Fault.RESTART, Fault.PAUSE})

    def __init__(self, make_container: Callable[[], Any], internal_port: int, url_format: str, what: str):
        self.make_container = make_container
        self.internal_port = internal_port
        self.what = what
        self.port = free_port()
        self.container = self._run()
        self.host: str = self.container.get_container_host_ip()
        self._paused = False
        super().__init__(url_format.format(host=self.host, port=self.port))

    def _run(self) -> Any:
        container = self.make_container()
        container.with_bind_ports(self.internal_port, self.port)
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001
            with contextlib.suppress(Exception):
                container.stop()
            raise ServerError(f"{self.what} container did not start: {type(exc).__name__}: {exc}") from None
        return container

    def restart(self, keep_state: bool = False) -> None:
        self.resume()
        if keep_state:
            self.container.get_wrapped_container().restart(timeout=10)
        else:
            self.container.stop()  # removes the container and its filesystem: the state goes with it
            self.container = self._run()
        if not wait_for_accept(self.host, self.port, PROCESS_TIMEOUT):
            raise ServerError(f"{self.what} container did not accept on port {self.port} after a restart")

    def suspend(self) -> None:
        if self._paused:
            raise ServerError(f"{self.what} container is already paused")
        self.container.get_wrapped_container().pause()
        self._paused = True

    def resume(self) -> None:
        """Unpause the container; nothing when it is not paused."""
        if self._paused:
            self.container.get_wrapped_container().unpause()
            self._paused = False

    def stop(self) -> None:
        try:
            self.resume()
        finally:
            self.container.stop()
