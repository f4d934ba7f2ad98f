"""Servers in containers, through testcontainers, used only when a Docker engine answers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from .handles import Server, ServerError
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
    """A container with its port bound to a fixed host port, so a restart keeps the address."""

    restartable = True

    def __init__(self, container: Any, internal_port: int, url_format: str, what: str):
        self.container = container
        self.what = what
        host_port = free_port()
        container.with_bind_ports(internal_port, host_port)
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001
            with contextlib.suppress(Exception):
                container.stop()
            raise ServerError(f"{what} container did not start: {type(exc).__name__}: {exc}") from None
        self.host: str = container.get_container_host_ip()
        self.port = host_port
        super().__init__(url_format.format(host=self.host, port=host_port))

    def restart(self) -> None:
        self.container.get_wrapped_container().restart(timeout=10)
        if not wait_for_accept(self.host, self.port, PROCESS_TIMEOUT):
            raise ServerError(f"{self.what} container did not accept on port {self.port} after a restart")

    def stop(self) -> None:
        self.container.stop()
