"""Run the conformance suite against a layer in a subprocess, as a user would, and read its report.

``in_process=True`` runs it inside the test's own process instead: no interpreter, pytest and
plugin start-up per run, for the many short runs of the mutant tests (a layer that is plain
Python and needs no process of its own).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import pytest

# Imported here, before any in-process run: a run that imported the servers package first would
# leave ``asgi_conformance.servers`` set on its parent while the restore of sys.modules drops
# psutil (which mirakuru's process handling looks up there), and stopping this session's
# servers afterwards would fail with KeyError: 'psutil'.
import asgi_conformance.servers  # noqa: F401
from asgi_conformance.requirements import REQUIREMENTS

# The FAULT area runs only where the plugin started the server and --asgi-faults asks for it
# (tests/test_fault_area.py); a whole-suite run without them SKIPs it, saying so.
FAULT_AREA = frozenset(rid for rid, requirement in REQUIREMENTS.items() if requirement.area == "FAULT")
FAULT_AREA_SKIPPED = "FAULT-* run only with"


@dataclass
class SuiteRun:
    result: object  # pytest's RunResult
    report: dict

    def status(self, requirement_id: str) -> str:
        return self.statuses()[requirement_id]

    def statuses(self) -> dict[str, str]:
        return {row["id"]: row["status"] for row in self.report["requirements"]}

    def with_status(self, status: str) -> dict[str, list[str]]:
        return {row["id"]: row["details"] for row in self.report["requirements"] if row["status"] == status}

    def not_passed_outside_the_fault_area(self) -> dict[str, list[str]]:
        """Every requirement but FAULT-* that did not PASS, with its status and details."""
        return {row["id"]: [row["status"], *row["details"]] for row in self.report["requirements"]
                if row["status"] != "PASS" and row["id"] not in FAULT_AREA}

    def fault_area_skipped_saying_why(self) -> bool:
        skipped = self.with_status("SKIP")
        return all(any(FAULT_AREA_SKIPPED in detail for detail in skipped.get(rid, ())) for rid in FAULT_AREA)


def run_suite(pytester, layer: str, *args: str, config: dict | None = None, strict: bool = True,
              timeout: float = 600, in_process: bool = False) -> SuiteRun:
    """``pytest --asgi-layer=LAYER ...`` in pytester's empty folder; returns the run and the JSON report.

    ``timeout`` bounds a subprocess run; an in-process run is bounded by the calling test's own
    time limit (pytest-timeout).
    """
    report_path = pytester.path / "conformance.json"
    argv = [f"--asgi-layer={layer}", f"--asgi-report={report_path}", "-p", "no:cacheprovider", "-q"]
    if strict:
        argv.append("--asgi-strict")
    if config is not None:
        argv.append("--asgi-layer-config=" + json.dumps(config))
    if in_process:
        result = _run_in_process(pytester, *argv, *args)
    else:
        result = pytester.runpytest_subprocess(*argv, *args, timeout=timeout)
    assert report_path.exists(), "the suite wrote no report:\n" + "\n".join(result.outlines[-30:])
    return SuiteRun(result, json.loads(report_path.read_text()))


def _run_in_process(pytester, *argv: str):
    """One suite run in this process, leaving no trace in the next one.

    pytester gives the run its own config (so its own report, target, options and settings) and
    restores sys.modules and sys.path afterwards.
    """
    with warnings.catch_warnings():
        # Other plugins' nags about the run's own set-up (pytest-asyncio's unset ini option,
        # pytest-benchmark under xdist) would land on the calling test; a subprocess run
        # prints them to its own output instead. The suite's tests catch their own warnings.
        warnings.simplefilter("ignore", pytest.PytestWarning)
        return pytester.runpytest_inprocess(*argv)
