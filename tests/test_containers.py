"""The testcontainers path, proven: ``--asgi-server`` on containers of the private Docker engine.

``ci/docker-engine.sh start`` (run by ci/test) starts the engine and builds the ``redis:7`` and
``rabbitmq:3`` images from the machine's Debian packages. Where it could not start, these tests
do not pretend: the engine test SKIPs with the script's one-line reason, and the FAULT run goes
to the local binaries (``ASGI_TEST_SERVERS=local``), asserting that it did, so the run still
proves the fault handle, and its header names the path taken.

In the gate: the engine and its images, the forced-path errors, and the Redis FAULT area on
containers (the fault handle on containers: restart, pause, dropped connections). Extended
(``bash ci/docker-engine.sh start && python3 -m pytest tests/test_containers.py -m extended``):
the strict suites of our Redis and RabbitMQ layers on containers, and RabbitMQ's FAULT area.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from asgi_conformance import servers
from asgi_conformance.servers.containers import SERVER_SOURCE_ENV
from tests.suite_runner import run_suite
from tests.test_fault_area import FAULT_IDS, FAULTS, QUICK, _all_pass_but_failover, _explain, _fault_verdicts

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINE_SCRIPT = REPO_ROOT / "ci" / "docker-engine.sh"
REDIS = "reference_layers.redis.RedisChannelLayer"
RABBITMQ = "reference_layers.rabbitmq.RabbitMQChannelLayer"
HEADER = "asgi-conformance servers: "


@dataclass(frozen=True)
class Engine:
    """The Docker engine the container tests use: DOCKER_HOST, or none and why not."""

    docker_host: str | None
    why_not: str = ""

    @property
    def source(self) -> str:
        return "containers" if self.docker_host else "local"


@pytest.fixture(scope="module")
def engine() -> Engine:
    """A DOCKER_HOST the caller gave, else the private engine's (ci/docker-engine.sh status)."""
    given = os.environ.get("DOCKER_HOST")
    if given:
        return Engine(given) if servers.docker_engine_answers() else Engine(None, f"DOCKER_HOST={given} does not answer")
    status = subprocess.run(["bash", str(ENGINE_SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode == 0:
        return Engine(status.stdout.strip())
    return Engine(None, status.stdout.strip() or status.stderr.strip())


@pytest.fixture
def on_engine(engine, monkeypatch) -> Engine:
    """Point this test's runs at the engine (or, without one, at the local binaries, saying so)."""
    if engine.docker_host:
        monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
    monkeypatch.setenv(SERVER_SOURCE_ENV, engine.source)
    return engine


def _where_servers_ran(run) -> str:
    lines = [line for line in run.result.outlines if line.startswith(HEADER)]
    assert lines, "the run printed no server header:\n" + "\n".join(run.result.outlines[:15])
    return lines[0][len(HEADER):]


def _assert_ran_on(run, engine: Engine, image: str) -> None:
    where = _where_servers_ran(run)
    if engine.docker_host:
        assert f"container ({image})" in where, where
    else:
        assert "local " in where and "container" not in where, where
        warnings.warn(f"no Docker engine ({engine.why_not}): ran on the local binaries", stacklevel=2)


# --- the engine and its images ----------------------------------------------------------------

def test_the_engine_answers_and_the_images_are_built(engine, monkeypatch):
    if not engine.docker_host:
        pytest.skip(f"no Docker engine: {engine.why_not}; the container tests run the local path")
    monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
    assert servers.docker_engine_answers()
    for image in (servers.REDIS_IMAGE, servers.RABBITMQ_IMAGE):
        inspected = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True,
                                   timeout=60, env={**os.environ, "DOCKER_HOST": engine.docker_host})
        assert inspected.returncode == 0, f"{image} is not built: {inspected.stderr.strip()}"
        assert json.loads(inspected.stdout)[0]["Config"]["Cmd"], f"{image} has no command"


# --- forcing a path -----------------------------------------------------------------------------

def _closed_port() -> int:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port: int = closed.getsockname()[1]
    closed.close()
    return port


def test_containers_forced_without_an_engine_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv(SERVER_SOURCE_ENV, "containers")
    with pytest.raises(servers.ServerError, match=f"{SERVER_SOURCE_ENV}=containers, but no Docker engine answers"), \
            servers.redis_servers(1):
        pass


def test_an_unknown_server_source_is_refused(monkeypatch):
    monkeypatch.setenv(SERVER_SOURCE_ENV, "cloud")
    with pytest.raises(servers.ServerError, match="expected one of auto, local, containers"), servers.redis_servers(1):
        pass


@pytest.mark.redis
def test_local_forced_starts_a_local_binary_even_where_an_engine_answers(on_engine, monkeypatch):
    monkeypatch.setenv(SERVER_SOURCE_ENV, "local")
    with servers.redis_servers(1) as started:
        assert "local redis-server" in started.describe(), started.describe()


# --- the fault handle on containers, through the suite -----------------------------------------

@pytest.mark.redis
@pytest.mark.timeout(300)
def test_our_redis_layer_passes_the_fault_area_on_containers(pytester, on_engine):
    run = run_suite(pytester, REDIS, "--asgi-server=redis", *FAULTS, QUICK, "-v", timeout=250)
    _assert_ran_on(run, on_engine, servers.REDIS_IMAGE)
    verdicts, expected = _fault_verdicts(run), _all_pass_but_failover(FAULT_IDS)
    assert verdicts == expected, _explain(run, verdicts, expected)


# --- extended: whole suites on containers -------------------------------------------------------

@pytest.mark.extended
@pytest.mark.redis
@pytest.mark.timeout(900)
def test_our_redis_layer_passes_the_strict_suite_on_containers(pytester, on_engine):
    run = run_suite(pytester, REDIS, "--asgi-server=redis", "-v", timeout=800)
    _assert_ran_on(run, on_engine, servers.REDIS_IMAGE)
    assert not run.not_passed_outside_the_fault_area(), run.not_passed_outside_the_fault_area()
    assert run.fault_area_skipped_saying_why(), run.with_status("SKIP")
    assert run.result.ret == pytest.ExitCode.OK


@pytest.mark.extended
@pytest.mark.rabbitmq
@pytest.mark.timeout(1800)
def test_our_rabbitmq_layer_passes_the_strict_suite_on_containers(pytester, on_engine):
    run = run_suite(pytester, RABBITMQ, "--asgi-server=rabbitmq", "-v", timeout=1500)
    _assert_ran_on(run, on_engine, servers.RABBITMQ_IMAGE)
    assert not run.not_passed_outside_the_fault_area(), run.not_passed_outside_the_fault_area()
    assert run.fault_area_skipped_saying_why(), run.with_status("SKIP")
    assert run.result.ret == pytest.ExitCode.OK


@pytest.mark.extended
@pytest.mark.rabbitmq
@pytest.mark.timeout(400)
def test_our_rabbitmq_layer_passes_the_fault_area_on_containers(pytester, on_engine):
    # The default fault timeout, as for the local broker (tests/test_fault_area.py).
    run = run_suite(pytester, RABBITMQ, "--asgi-server=rabbitmq", *FAULTS, "-v", timeout=350)
    _assert_ran_on(run, on_engine, servers.RABBITMQ_IMAGE)
    verdicts, expected = _fault_verdicts(run), _all_pass_but_failover(FAULT_IDS)
    assert verdicts == expected, _explain(run, verdicts, expected)
    assert run.result.ret == pytest.ExitCode.OK
