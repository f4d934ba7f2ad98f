"""The conformance matrix tool writes one row per requirement and one column per layer."""

import subprocess
import sys
from pathlib import Path

from asgi_conformance.requirements import REQUIREMENTS

ROOT = Path(__file__).resolve().parent.parent


def test_the_matrix_of_two_in_memory_layers_has_every_requirement_and_the_failing_assertions(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tools.matrix", "--out", str(tmp_path),
                           "--only", "inmemory", "InMemory"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (tmp_path / "conformance.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| id |"))
    assert header == "| id | level | ours: inmemory | channels InMemory |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines()
            if line.startswith("| ") and line.split(" | ")[1] in ("MUST", "SHOULD")}
    assert set(REQUIREMENTS) <= set(rows)
    # Ours passes; channels' layer misses CAP-4, and the note carries its failing assertion.
    assert rows["CAP-4"].split(" | ")[2] == "pass"
    assert rows["CAP-4"].split(" | ")[3].startswith("FAIL [")
    note = rows["CAP-4"].split("FAIL [")[1].split("]")[0]
    assert f"\n{note}. CAP-4 on channels InMemory: " in markdown
    page = (tmp_path / "conformance.html").read_text()
    assert page.count("<tr><th title=") == len(REQUIREMENTS)  # one row per requirement, after the header
    assert 'title="' in page and "CAP-4" in page
