"""Run the conformance suite against a layer in a subprocess, as a user would, and read its report."""

from __future__ import annotations

import json
from dataclasses import dataclass


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


def run_suite(pytester, layer: str, *args: str, config: dict | None = None, strict: bool = True,
              timeout: float = 600) -> SuiteRun:
    """``pytest --asgi-layer=LAYER ...`` in pytester's empty folder; returns the run and the JSON report."""
    report_path = pytester.path / "conformance.json"
    argv = [f"--asgi-layer={layer}", f"--asgi-report={report_path}", "-p", "no:cacheprovider", "-q"]
    if strict:
        argv.append("--asgi-strict")
    if config is not None:
        argv.append("--asgi-layer-config=" + json.dumps(config))
    result = pytester.runpytest_subprocess(*argv, *args, timeout=timeout)
    assert report_path.exists(), "the suite wrote no report:\n" + "\n".join(result.outlines[-30:])
    return SuiteRun(result, json.loads(report_path.read_text()))
