"""The client-library drift guard (``python -m tools.drift``).

The whole guard (ten venvs, ten strict suites; about 6 min on two cores) is an extended run;
the gate checks its plan against the pins in pyproject.toml, its verdicts and table, and one
real venv whose install fails, which the table must say rather than hide.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import drift

ROOT = Path(__file__).resolve().parents[1]


def declared_bounds(distribution: str) -> tuple[str, str]:
    """The lower and upper bound pyproject.toml declares for a layer's client."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{distribution}>=([0-9.]+),<([0-9.]+)"', text)
    assert match, f"pyproject.toml declares no bounded {distribution} requirement"
    return match.group(1), match.group(2)


def test_the_plan_covers_exactly_the_client_lines_pyproject_declares():
    lines = drift.plan()
    names = [line.name for line in lines]
    assert names == [f"redis-py {m}{h}" for m in (5, 6, 7, 8) for h in (" + hiredis", "")] + ["pika 1.3", "pika 1.4"]
    assert [line.hiredis for line in lines if line.distribution == "redis"] == [True, False] * 4
    assert all(line.requirements[0].startswith("redis[hiredis]") == bool(line.hiredis)
               for line in lines if line.distribution == "redis")
    # The bounds a user gets are the lines the guard checks: from the oldest line to the newest.
    assert declared_bounds("redis") == ("5.0", "9")
    assert declared_bounds("pika") == ("1.3", "1.5")
    assert {line.layer for line in lines} == {drift.REDIS_LAYER, drift.RABBITMQ_LAYER}


def test_verdicts_and_the_table_say_what_happened():
    redis7, pika = drift.plan()[4], drift.plan()[-1]
    results = [
        drift.Result(redis7, drift.Outcome.PASS, "redis 7.4.1, hiredis 3.5.0"),
        drift.Result(redis7, drift.Outcome.PASS, "redis 7.4.1", flaky=["CHAN-9"]),
        drift.Result(redis7, drift.Outcome.FAILING, "redis 7.4.1", failing=["FAULT-3", "CAP-1"]),
        drift.Result(pika, drift.Outcome.INSTALL_FAILED, detail="No matching distribution found for pika<1.5,>=1.4"),
    ]
    rows = drift.table(results).splitlines()
    assert rows[0] == "| client line | installed | verdict |"
    assert rows[2] == "| redis-py 7 + hiredis | redis 7.4.1, hiredis 3.5.0 | pass |"
    assert rows[3].endswith("| pass (CHAN-9 passed on a rerun) |")
    assert rows[4].endswith("| 2 failing: FAULT-3, CAP-1 |")
    assert rows[5] == "| pika 1.4 | - | install failed: No matching distribution found for pika<1.5,>=1.4 |"


def test_failing_ids_read_a_report_and_no_report_is_none(tmp_path):
    report = tmp_path / "r.json"
    assert drift.failing_ids(report) is None
    report.write_text(json.dumps({"requirements": [{"id": "CAP-1", "status": "FAIL"}, {"id": "CAP-2", "status": "PASS"},
                                                    {"id": "EXP-1", "status": "SKIP"}]}))
    assert drift.failing_ids(report) == ["CAP-1"]


def test_a_client_that_cannot_be_installed_is_reported_so(tmp_path):
    """A real venv and a real pip, kept off any index: the install fails, and the row says so."""
    line = drift.Line("redis-py 0", "redis", ("redis==0.0.0",), drift.REDIS_LAYER, "redis", False)
    guard = drift.Guard(tmp_path, pip_args=("--no-index", "--find-links", str(tmp_path / "none")))
    result = guard.check(line)
    assert result.outcome is drift.Outcome.INSTALL_FAILED, result
    assert result.verdict.startswith("install failed: No matching distribution found for "), result.verdict


def test_a_run_over_its_time_is_interrupted_and_says_so(tmp_path):
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        drift.run([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, {}, timeout=0.5)
    assert time.monotonic() - started < 10  # SIGINT ended it: no waiting out the sleep
    done = drift.run([sys.executable, "-c", "print('ok')"], tmp_path, {}, timeout=30)
    assert (done.returncode, done.stdout) == (0, "ok\n")


def test_a_run_deaf_to_sigint_is_stopped_with_sigterm_well_before_the_servers_grace(tmp_path):
    """A child that inherited SIGINT ignored (or blocked) never hears it: seen in CI, where such a
    run waited out the whole STOP_GRACE. SIGTERM follows INTERRUPT_GRACE later."""
    deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        drift.run([sys.executable, "-c", deaf], tmp_path, {}, timeout=0.5)
    assert time.monotonic() - started < drift.INTERRUPT_GRACE + 5 < drift.STOP_GRACE


def test_the_command_prints_its_plan_and_refuses_an_unknown_line():
    plan = subprocess.run([sys.executable, "-m", "tools.drift", "--plan", "--only", "pika"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == [
        f"pika 1.{m}: pip install pika>=1.{m},<1.{m + 1}; {drift.RABBITMQ_LAYER} on --asgi-server=rabbitmq" for m in (3, 4)]
    unknown = subprocess.run([sys.executable, "-m", "tools.drift", "--plan", "--only", "psycopg"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode != 0 and "no such client line" in unknown.stderr


@pytest.mark.extended
@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.timeout(3600)
def test_every_supported_client_line_passes_the_strict_suite():
    done = subprocess.run([sys.executable, "-m", "tools.drift"], cwd=ROOT, capture_output=True, text=True, timeout=3500)
    rows = [row for row in done.stdout.splitlines() if row.startswith("| ") and not row.startswith("| client")]
    assert len(rows) == len(drift.plan()), done.stdout + done.stderr[-3000:]
    assert done.returncode == 0 and all(row.endswith(" pass |") or "passed on a rerun" in row for row in rows), done.stdout
