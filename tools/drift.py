"""``python -m tools.drift``: our server layers' strict suite against every client release we support.

A new redis-py or pika release can change what our Redis and RabbitMQ layers get from them
(connection errors, parsers, callbacks) without a line of ours changing. For each supported
client line (redis-py majors 5 to 8, each with and without hiredis; pika 1.3 and 1.4) this makes
a throwaway venv (no system site-packages), installs this checkout (``pip install -e``), the
suite's runtime needs and the newest release of that line the configured index serves, checks
that the venv really imports that client (and hiredis, or not), and runs the layer's strict
suite, FAULT area included, on a server the plugin starts. It prints a table: client line ->
installed versions -> verdict (pass, the failing ids, install failed, timed out).

A requirement that fails is run once more on its own: a timing test can lose to a loaded
machine, and the table says when a rerun passed. The pins in ``pyproject.toml`` cover only what
this table has verified (``docs/ci.md`` records the last run). A maintainer's tool, not the plugin's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a suite run needs in the venv besides the project's own dependencies: the plugin's
# process library and free-port finder (``--asgi-server`` starts local binaries here).
RUNTIME = ("mirakuru>=2.5", "port-for>=0.7")
INSTALL_TIMEOUT = 600.0  # one venv's installs, seconds
RUN_TIMEOUT = 900.0  # one whole suite run
RERUN_TIMEOUT = 300.0
INTERRUPT_GRACE = 5.0  # how long a timed-out run may take to answer SIGINT before SIGTERM
STOP_GRACE = 60.0  # how long a timed-out run may take to stop its servers
REDIS_LAYER = "reference_layers.redis.RedisChannelLayer"
RABBITMQ_LAYER = "reference_layers.rabbitmq.RabbitMQChannelLayer"
# Printed by the probe in each venv: the client's version, hiredis's (or none), and whether our
# Redis layer parses with hiredis, so a row "without hiredis" is proved to run without it.
PROBE = """
import importlib.metadata as m, json, sys
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
out = {"client": version(sys.argv[1]), "hiredis": version("hiredis")}
if sys.argv[1] == "redis":
    from reference_layers.redis.wire import USES_HIREDIS
    out["uses_hiredis"] = USES_HIREDIS
print(json.dumps(out))
"""


class Outcome(Enum):
    PASS = "pass"
    FAILING = "failing"
    INSTALL_FAILED = "install failed"
    WRONG_CLIENT = "wrong client"  # the venv did not import what the row asked for
    TIMED_OUT = "timed out"
    NO_REPORT = "no report"  # the run ended without writing its report (a usage or server error)


@dataclass(frozen=True)
class Line:
    """One supported client line: what to pin, and which layer and server it is checked with."""

    name: str  # "redis-py 5 + hiredis"
    distribution: str  # "redis" or "pika": the probe reads its version
    requirements: tuple[str, ...]  # what pip installs for it: "redis[hiredis]>=5,<6"
    layer: str
    server: str
    hiredis: bool | None = None  # for redis-py: must the layer parse with hiredis?


@dataclass
class Result:
    line: Line
    outcome: Outcome
    versions: str = ""  # "redis 5.3.1, hiredis 3.5.0"
    failing: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)  # failed once, passed when run again
    detail: str = ""
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        if self.outcome is Outcome.PASS:
            return "pass" + (f" ({', '.join(self.flaky)} passed on a rerun)" if self.flaky else "")
        if self.outcome is Outcome.FAILING:
            return f"{len(self.failing)} failing: {', '.join(self.failing)}"
        return f"{self.outcome.value}: {self.detail}" if self.detail else self.outcome.value


def plan() -> list[Line]:
    """Every line we support: redis-py 5-8 with and without hiredis, pika 1.3 and 1.4."""
    lines = []
    for major in (5, 6, 7, 8):
        pin = f">={major},<{major + 1}"
        lines.append(Line(f"redis-py {major} + hiredis", "redis", (f"redis[hiredis]{pin}",), REDIS_LAYER, "redis", True))
        lines.append(Line(f"redis-py {major}", "redis", (f"redis{pin}",), REDIS_LAYER, "redis", False))
    for minor in (3, 4):
        lines.append(Line(f"pika 1.{minor}", "pika", (f"pika>=1.{minor},<1.{minor + 1}",), RABBITMQ_LAYER, "rabbitmq"))
    return lines


def clean_env(venv: Path) -> dict[str, str]:
    """The venv's environment, nothing of ours leaking in (PYTHONPATH, pytest options, given servers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV", "ASGI_TEST_"))}
    env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv),
                "ASGI_TEST_SERVERS": "local", "PIP_ROOT_USER_ACTION": "ignore"})
    return env


def run(args: Sequence[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """A bounded subprocess; over time, it is interrupted and subprocess.TimeoutExpired raised.

    SIGINT first, as Ctrl-C would: pytest then stops the servers and peers the plugin started
    (a SIGKILL would leave them running). If that has not ended it ``INTERRUPT_GRACE`` later (a
    process that inherited SIGINT ignored or blocked never sees it: seen in CI), SIGTERM, which
    the plugin also answers by stopping its servers; SIGKILL only ``STOP_GRACE`` after that.
    """
    process = subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for stop, grace in ((signal.SIGINT, INTERRUPT_GRACE), (signal.SIGTERM, STOP_GRACE)):
            process.send_signal(stop)
            try:
                process.communicate(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            process.kill()
            process.communicate()
        raise subprocess.TimeoutExpired(process.args, timeout) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def last_lines(text: str, n: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-n:])


def pip_error(text: str) -> str:
    """pip's own last ``ERROR:`` line (what it could not find), else its last lines."""
    errors = [line.strip().removeprefix("ERROR: ") for line in text.splitlines() if line.strip().startswith("ERROR: ")]
    return errors[-1] if errors else last_lines(text, 2)


class Guard:
    """Runs the plan's lines, ``jobs`` at a time, each in its own venv under one temp dir."""

    def __init__(self, workdir: Path, faults: bool = True, pip_args: Sequence[str] = ()):
        self.workdir = workdir
        self.faults = faults
        self.pip_args = tuple(pip_args)
        # `pip install -e` builds in the checkout (egg-info, the C extension): one at a time.
        self._install_lock = threading.Lock()

    def check(self, line: Line) -> Result:
        started = time.monotonic()
        result = self._check(line)
        result.seconds = time.monotonic() - started
        return result

    def _check(self, line: Line) -> Result:
        venv = self.workdir / line.name.replace(" ", "_").replace("+", "and")
        try:
            installed = self._install(line, venv)
        except subprocess.TimeoutExpired:
            return Result(line, Outcome.INSTALL_FAILED, detail=f"over {INSTALL_TIMEOUT:.0f} s")
        if isinstance(installed, Result):
            return installed
        versions, probe = installed
        if line.hiredis is not None and probe.get("uses_hiredis") is not line.hiredis:
            return Result(line, Outcome.WRONG_CLIENT, versions, detail=f"the layer's hiredis use is {probe}")
        try:
            return self._run_suite(line, venv, versions)
        except subprocess.TimeoutExpired as exc:
            return Result(line, Outcome.TIMED_OUT, versions, detail=f"over {exc.timeout:.0f} s")

    def _install(self, line: Line, venv: Path) -> tuple[str, dict[str, object]] | Result:
        run([sys.executable, "-m", "venv", "--without-pip", venv], self.workdir, clean_env(venv), 60).check_returncode()
        pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "--disable-pip-version-check",
               "--quiet", "install", *self.pip_args]
        with self._install_lock:
            done = run([*pip, "-e", ROOT, *RUNTIME, *line.requirements], self.workdir, clean_env(venv), INSTALL_TIMEOUT)
        if done.returncode != 0:
            return Result(line, Outcome.INSTALL_FAILED, detail=pip_error(done.stderr or done.stdout))
        probe_run = run([venv / "bin" / "python", "-c", PROBE, line.distribution], self.workdir, clean_env(venv), 60)
        if probe_run.returncode != 0:
            return Result(line, Outcome.WRONG_CLIENT, detail=last_lines(probe_run.stderr))
        probe = json.loads(probe_run.stdout)
        versions = f"{line.distribution} {probe['client']}"
        if probe.get("hiredis"):
            versions += f", hiredis {probe['hiredis']}"
        return versions, probe

    def suite_args(self, line: Line, report: Path, only: Sequence[str] = ()) -> list[str | Path]:
        args: list[str | Path] = ["-m", "pytest", f"--asgi-layer={line.layer}", f"--asgi-server={line.server}",
                                  "--asgi-strict", f"--asgi-report={report}", "-p", "no:cacheprovider", "-q"]
        if self.faults:
            args.append("--asgi-faults")
        args += [f"--asgi-requirement={rid}" for rid in only]
        return args

    def _run_suite(self, line: Line, venv: Path, versions: str) -> Result:
        rundir = venv.with_name(venv.name + "-run")
        rundir.mkdir()
        report = rundir / "conformance.json"
        python = venv / "bin" / "python"
        done = run([python, *self.suite_args(line, report)], rundir, clean_env(venv), RUN_TIMEOUT)
        failing = failing_ids(report)
        if failing is None:
            return Result(line, Outcome.NO_REPORT, versions, detail=f"exit {done.returncode}: {last_lines(done.stdout)}")
        if not failing:
            return Result(line, Outcome.PASS, versions)
        again = rundir / "rerun.json"
        run([python, *self.suite_args(line, again, failing)], rundir, clean_env(venv), RERUN_TIMEOUT)
        still = failing_ids(again)
        still_failing = failing if still is None else [rid for rid in failing if rid in still]
        flaky = [rid for rid in failing if rid not in still_failing]
        if still_failing:
            return Result(line, Outcome.FAILING, versions, failing=still_failing, flaky=flaky)
        return Result(line, Outcome.PASS, versions, flaky=flaky)


def failing_ids(report: Path) -> list[str] | None:
    """The ids a JSON report says FAILed; None when there is no report."""
    if not report.exists():
        return None
    return [row["id"] for row in json.loads(report.read_text())["requirements"] if row["status"] == "FAIL"]


def table(results: Sequence[Result]) -> str:
    """A Markdown table, one row per client line."""
    rows = ["| client line | installed | verdict |", "|---|---|---|"]
    rows += [f"| {r.line.name} | {r.versions or '-'} | {r.verdict} |" for r in results]
    return "\n".join(rows)


def check_all(lines: Sequence[Line], jobs: int, faults: bool, pip_args: Sequence[str] = (),
              keep: Path | None = None) -> list[Result]:
    """Check every line, ``jobs`` at a time, in venvs under a temp dir (removed unless ``keep``)."""
    with tempfile.TemporaryDirectory(prefix="asgi-drift-") as temp:
        workdir = keep or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        guard = Guard(workdir, faults, pip_args)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(guard.check, line) for line in lines]
            results = []
            for future in futures:
                result = future.result()
                print(f"  {result.line.name}: {result.verdict} ({result.seconds:.0f} s)", file=sys.stderr, flush=True)
                results.append(result)
    return results


def select(lines: Sequence[Line], only: Sequence[str]) -> list[Line]:
    """The lines whose name starts with one of ``only`` (all when empty); an unknown name is an error."""
    if not only:
        return list(lines)
    chosen = [line for line in lines if any(line.name.startswith(prefix) for prefix in only)]
    if not chosen:
        names = ", ".join(line.name for line in lines)
        raise SystemExit(f"--only {' '.join(only)}: no such client line (lines: {names})")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help="check only the lines whose name starts so (e.g. 'redis-py 7', 'pika')")
    parser.add_argument("--jobs", type=int, default=2, help="lines checked at once (default %(default)s)")
    parser.add_argument("--no-faults", action="store_true", help="leave the FAULT area out (it adds ~20 s a line)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="make the venvs here and keep them")
    parser.add_argument("--plan", action="store_true", help="print the lines and their pins, run nothing")
    args = parser.parse_args(argv)
    lines = select(plan(), args.only)
    if args.plan:
        for line in lines:
            print(f"{line.name}: pip install {' '.join(line.requirements)}; {line.layer} on --asgi-server={line.server}")
        return 0
    started = time.monotonic()
    results = check_all(lines, args.jobs, not args.no_faults, keep=args.keep)
    print(table(results))
    print(f"\n{time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}, {time.monotonic() - started:.0f} s")
    return 0 if all(r.outcome is Outcome.PASS for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
