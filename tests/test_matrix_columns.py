"""The ecosystem's matrix columns, quickly: each configures (its server started for the run, its
Django settings made, its layer built) and gets a verdict on one short requirement, through the
matrix's own run, and that verdict is the one docs/conformance.md shows. The whole matrix of these
columns is the extended test below (its documented command: ``python -m pytest -m extended``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.matrix import run_suite
from tools.matrix_columns import ECOSYSTEM_COLUMNS, SERVER_KEYS

ROOT = Path(__file__).resolve().parent.parent
QUICK = "MSG-1"  # deterministic and short on every layer: a non-dict is refused at send
# channels-valkey ×3 hashes a process-specific channel's full name at send but only its "x!" prefix
# at receive, so a message reaches the shard its receiver reads in about one run of three: each
# test that sends to such a channel (MSG-1's does) passes or fails by the random name it drew.
# NAME-2 sends nothing and gets the same verdict every run.
QUICK_FOR = {"channels-valkey ×3": "NAME-2"}
SHOWN = {"pass": "PASS", "FAIL": "FAIL", "dev": "DEVIATION", "skip": "SKIP"}


def documented_verdict(column: str, rid: str) -> str:
    lines = (ROOT / "docs" / "conformance.md").read_text().splitlines()
    names = next(line for line in lines if line.startswith("| id | level |")).strip("| ").split(" | ")
    row = next(line for line in lines if line.startswith(f"| {rid} |")).strip("| ").split(" | ")
    return SHOWN[row[names.index(column)].split(" [")[0]]


@pytest.mark.parametrize("column", ECOSYSTEM_COLUMNS, ids=[c.name for c in ECOSYSTEM_COLUMNS])
def test_the_column_configures_and_its_quick_verdict_is_the_documented_one(column, tmp_path):
    quick = QUICK_FOR.get(column.name, QUICK)
    argv = (*column.fault_args, f"--asgi-requirement={quick}", *column.args)
    report = run_suite(column, dict(column.config), argv, tmp_path / "report.json", strict=False)

    assert "error" not in report, report
    statuses = {row["id"]: row["status"] for row in report["requirements"] if row["status"] != "NOT RUN"}
    assert set(statuses) == {quick}
    assert statuses[quick] == documented_verdict(column.name, quick)


def test_every_column_server_kind_is_one_the_plugin_starts():
    from asgi_conformance.plugin import SERVER_CONFIG_KEYS

    kinds = {c.server.partition(":")[0] for c in ECOSYSTEM_COLUMNS if c.server}
    assert kinds == {"valkey", "postgres", "nats"}
    assert {kind: SERVER_KEYS[kind] for kind in kinds} == {kind: SERVER_CONFIG_KEYS[kind] for kind in kinds}


@pytest.mark.extended
@pytest.mark.timeout(7200)
def test_the_whole_ecosystem_matrix_runs_with_its_fault_runs(tmp_path):
    """Every ecosystem column through the whole suite and its FAULT run: a verdict in every cell."""
    names = [c.name for c in ECOSYSTEM_COLUMNS]
    done = subprocess.run([sys.executable, "-m", "tools.matrix", "--out", str(tmp_path), "--faults", "--only", *names],
                          cwd=ROOT, capture_output=True, text=True, timeout=7000)
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "conformance.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("| id |"))
    assert header == "| id | level | " + " | ".join(names) + " |"
    rows = [line for line in page.splitlines() if " | MUST | " in line or " | SHOULD | " in line]
    assert rows and not any("ERROR" in row or " - " in row for row in rows), rows
