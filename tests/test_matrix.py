"""The conformance matrix tool writes one row per requirement and one column per layer, and
judges the FAULT area in a run of its own for each column whose server can be faulted."""

import subprocess
import sys
from pathlib import Path

from asgi_conformance.requirements import REQUIREMENTS
from tools.matrix import DEFAULT_COLUMNS, FAULT_IDS, Page, markdown, read_markdown, with_fault_verdicts
from tools.matrix import markdown as write_page

ROOT = Path(__file__).resolve().parent.parent


def test_the_matrix_of_two_in_memory_layers_has_every_requirement_and_the_failing_assertions(tmp_path):
    # A column already on the page and not run again (--only) is kept as it was.
    kept = {"channels_rabbitmq": _report(dict.fromkeys(REQUIREMENTS, "PASS") | {"CAP-1": "FAIL"})}
    (tmp_path / "conformance.md").write_text(write_page(Page(kept)))
    # 1 s for a message to arrive, not 5: in-memory layers deliver at once, and each of channels'
    # failing tests would wait out the limit. The page says so.
    done = subprocess.run([sys.executable, "-m", "tools.matrix", "--out", str(tmp_path), "--delivery-timeout", "1",
                           "--only", "inmemory", "InMemory"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (tmp_path / "conformance.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| id |"))
    assert header == "| id | level | ours: inmemory | channels InMemory | channels_rabbitmq |"
    assert "Messages were given 1 s to arrive (the suite's default: 5 s)." in markdown
    rows = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines()
            if line.startswith("| ") and line.split(" | ")[1] in ("MUST", "SHOULD")}
    assert set(REQUIREMENTS) <= set(rows)
    # Ours passes; channels' layer misses CAP-4, and the note carries its failing assertion.
    assert rows["CAP-4"].split(" | ")[2] == "pass"
    assert rows["CAP-4"].split(" | ")[3].startswith("FAIL [")
    assert rows["CAP-1"].split(" | ")[4].startswith("FAIL [") and rows["CAP-4"].split(" | ")[4] == "pass |"
    note = rows["CAP-4"].split("FAIL [")[1].split("]")[0]
    assert f"\n{note}. CAP-4 on channels InMemory: " in markdown
    page = (tmp_path / "conformance.html").read_text()
    assert page.count("<tr><th title=") == len(REQUIREMENTS)  # one row per requirement, after the header
    assert 'title="' in page and "CAP-4" in page
    # No server to fault: FAULT-* SKIP with the plugin's reason (FAULT-8 first skips as cross-process).
    for rid in sorted(FAULT_IDS - {"FAULT-8"}):
        assert rows[rid].split(" | ")[2].startswith("skip ["), rows[rid]
        note = rows[rid].split(" | ")[2].split("[")[1].rstrip("]")
        assert "needs no server" in markdown.split(f"\n{note}. {rid} on ours: inmemory: ")[1].split("\n")[0]


def _report(statuses: dict[str, str]) -> dict:
    return {"requirements": [{"id": rid, "status": status, "details": [f"why {rid}"] if status != "PASS" else []}
                             for rid, status in statuses.items()]}


def test_a_fault_run_replaces_only_the_fault_rows_and_an_error_fills_them():
    column = _report({"MSG-1": "PASS", "FAULT-2": "SKIP", "FAULT-5": "SKIP"})
    merged = with_fault_verdicts(column, _report({"MSG-1": "NOT RUN", "FAULT-2": "PASS", "FAULT-5": "FAIL"}))
    assert {row["id"]: row["status"] for row in merged["requirements"]} == {
        "MSG-1": "PASS", "FAULT-2": "PASS", "FAULT-5": "FAIL"}
    broken = with_fault_verdicts(column, {"error": "ERROR: --asgi-server=redis: no redis-server"})
    statuses = {row["id"]: (row["status"], row["details"]) for row in broken["requirements"]}
    assert statuses["MSG-1"] == ("PASS", [])
    assert {rid: statuses[rid] for rid in FAULT_IDS} == dict.fromkeys(
        FAULT_IDS, ("ERROR", ["ERROR: --asgi-server=redis: no redis-server"]))


def test_a_written_page_reads_back_to_the_same_page():
    """--faults-only keeps every other verdict from the page on disk: reading it must lose nothing it shows."""
    statuses = ["PASS", "FAIL", "DEVIATION", "SKIP", "NOT RUN"]
    results = {name: _report({rid: statuses[(i + j) % len(statuses)] for j, rid in enumerate(REQUIREMENTS)})
               for i, name in enumerate(["ours: redis ×3", "channels_redis"])}
    written = markdown(Page(results, {"ours: redis ×3": 61.0, "channels_redis": 12.0}))
    again = read_markdown(written)
    assert again.fault_seconds == {"ours: redis ×3": 61.0, "channels_redis": 12.0}
    assert markdown(again) == written
    assert again.results["channels_redis"]["requirements"][1] == results["channels_redis"]["requirements"][1]


def test_each_server_backed_column_starts_its_own_server_for_the_fault_run():
    fault_args = {column.name: column.fault_args for column in DEFAULT_COLUMNS}
    assert fault_args["channels_rabbitmq"] == ("--asgi-server=rabbitmq", "--asgi-server-config-key=host")
    assert fault_args["channels_redis ×3"] == ("--asgi-server=redis:3",)
    assert fault_args["ours: ipc"] == fault_args["channels InMemory"] == ()
