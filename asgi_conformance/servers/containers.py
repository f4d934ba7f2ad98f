"""Servers in containers, through testcontainers, used when a Docker engine answers.

Each container runs on the host's network (no port mapping, no bridge: the engine may have
none, and traffic stays on loopback), its server told a free loopback port on its command
line, so a restart in a fresh container keeps the address. Ryuk, testcontainers' reaper, is
not started: it is one more image to pull, and every container here is stopped by its handle
(and the atexit hook of ``processes``). ``ASGI_TEST_SERVERS`` forces one path (``local`` or
``containers``); unset or ``auto``, containers where an engine answers, local binaries otherwise.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .handles import Fault, Server, ServerError
from .network import LOOPBACK, free_port, wait_for_accept
from .processes import PROCESS_TIMEOUT

DOCKER_PROBE_TIMEOUT = 1.0
SERVER_SOURCE_ENV = "ASGI_TEST_SERVERS"
ENGINE_HINT = "bash ci/docker-engine.sh start"  # starts a private engine and builds the images
LOG_TAIL = 300  # characters of a failed container's log a ServerError shows


class ServerSource(enum.Enum):
    """Where ``--asgi-server`` takes a server from when the environment gives none."""

    AUTO = "auto"
    LOCAL = "local"
    CONTAINERS = "containers"


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


def server_source() -> ServerSource:
    value = os.environ.get(SERVER_SOURCE_ENV, "").strip().lower() or ServerSource.AUTO.value
    try:
        return ServerSource(value)
    except ValueError:
        choices = ", ".join(source.value for source in ServerSource)
        raise ServerError(f"{SERVER_SOURCE_ENV}={value!r}: expected one of {choices}") from None


def use_containers() -> bool:
    """Whether to start containers: forced either way by ``ASGI_TEST_SERVERS``, else where an
    engine answers. Forced containers without an engine is a ServerError, never a silent fallback."""
    source = server_source()
    if source is ServerSource.LOCAL:
        return False
    answers = docker_engine_answers()
    if source is ServerSource.CONTAINERS and not answers:
        where = os.environ.get("DOCKER_HOST") or "/var/run/docker.sock"
        raise ServerError(f"{SERVER_SOURCE_ENV}=containers, but no Docker engine answers at {where} "
                          f"(start one, e.g. {ENGINE_HINT}, and set DOCKER_HOST)")
    return answers


def _without_ryuk() -> None:
    from testcontainers.core.config import testcontainers_config

    testcontainers_config.ryuk_disabled = True


class ContainerServer(Server):
    """A server in a container on the host's network, on a loopback port of its own.

    ``command(port)`` is the server's full command line (so an official image of the same tag
    works as well as the one ci/ builds), ``env(port)`` its environment: both made once, for the
    port the server keeps across restarts. A fault handle too: a restart
    that loses the state replaces the container by a fresh one on the same port (one that keeps
    it restarts the container in place, its filesystem kept); a pause freezes every process in
    it (``docker pause``, the cgroup freezer: SIGSTOP's container form). Kinds add how to drop
    their clients.
    """

    restartable = True
    faults = frozenset({Fault.RESTART, Fault.PAUSE})
    persists_state = False  # whether the server keeps its state on disk across a restart in place

    def __init__(self, image: str, command: Callable[[int], list[str]], env: Callable[[int], Mapping[str, str]],
                 url_format: str, what: str):
        self.image = image
        self.port = free_port()
        self.command = command(self.port)
        self.env = dict(env(self.port))
        self.what = f"{what} container ({image}) on port {self.port}"
        self._paused = False
        super().__init__(url_format.format(host=LOOPBACK, port=self.port))
        self.container = self._run()

    def _run(self) -> Any:
        from testcontainers.core.container import DockerContainer

        _without_ryuk()
        container = DockerContainer(self.image).with_command(self.command).with_kwargs(network="host")
        for name, value in self.env.items():
            container.with_env(name, value)
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - the engine's or testcontainers' error, on one line
            with contextlib.suppress(Exception):
                container.stop()
            message = " ".join(str(exc).split())[:LOG_TAIL]
            raise ServerError(f"{self.what} did not start: {type(exc).__name__}: {message} "
                              f"(images are built by {ENGINE_HINT})") from None
        self._wait_until_ready(container)
        return container

    def _wait_until_ready(self, container: Any) -> None:
        if wait_for_accept(LOOPBACK, self.port, PROCESS_TIMEOUT):
            return
        wrapped = container.get_wrapped_container()
        with contextlib.suppress(Exception):
            wrapped.reload()
        logs = b""
        with contextlib.suppress(Exception):
            logs = wrapped.logs(tail=5)
        with contextlib.suppress(Exception):
            container.stop()
        log = " | ".join(logs.decode(errors="replace").splitlines())[-LOG_TAIL:]
        raise ServerError(f"{self.what} did not accept within {PROCESS_TIMEOUT:.0f} s "
                          f"(container {wrapped.status}); log: {log}")

    @property
    def pid(self) -> int | None:
        """The pid (on this machine) of the container's first process."""
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        pid = wrapped.attrs.get("State", {}).get("Pid")
        return int(pid) if pid else None

    @property
    def origin(self) -> str:
        return f"{self.what}, container {self.container.get_wrapped_container().short_id}"

    def restart(self, keep_state: bool = False) -> None:
        if keep_state and not self.persists_state:
            raise ServerError(f"{self.what} runs without persistence: a restart cannot keep its state")
        self.resume()
        if keep_state:
            self.container.get_wrapped_container().restart(timeout=10)
            self._wait_until_ready(self.container)
        else:
            self.container.stop()  # removes the container and its filesystem: the state goes with it
            self.container = self._run()

    def suspend(self) -> None:
        if self._paused:
            raise ServerError(f"{self.what} is already paused")
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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} in {self.image}>"
