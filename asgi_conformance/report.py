"""Turns per-test outcomes into one verdict per requirement, as a table and as JSON.

Pure data in, text out: the plugin feeds it test outcomes and prints what it returns.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from .requirements import AREAS, CATALOGUE_VERSION, REQUIREMENTS

PASS, FAIL, DEVIATION, SKIP, NOT_RUN = "PASS", "FAIL", "DEVIATION", "SKIP", "NOT RUN"

# How a terminal shows a verdict line: keyword arguments of pytest's TerminalReporter.write_line.
STATUS_MARKUP: dict[str | None, dict[str, bool]] = {FAIL: {"red": True, "bold": True}, DEVIATION: {"yellow": True}}


@dataclass
class TestOutcome:
    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    outcome: str  # PASS, FAIL, DEVIATION or SKIP
    detail: str = ""


@dataclass
class Verdict:
    requirement_id: str
    level: str
    title: str
    status: str
    since: str = ""
    details: list[str] = field(default_factory=list)
    tests: list[TestOutcome] = field(default_factory=list)


class ReportLine(NamedTuple):
    """One line of the printed report, with the verdict it shows (None for headings and details)."""

    text: str
    status: str | None = None


class ConformanceReport:
    def __init__(self, layer_name: str, strict: bool):
        self.layer_name = layer_name
        self.strict = strict
        self._outcomes: dict[str, list[TestOutcome]] = {rid: [] for rid in REQUIREMENTS}

    def record(self, requirement_id: str, outcome: TestOutcome) -> None:
        self._outcomes[requirement_id].append(outcome)

    def verdicts(self) -> list[Verdict]:
        return [self._verdict(rid) for rid in REQUIREMENTS]

    def _verdict(self, rid: str) -> Verdict:
        req = REQUIREMENTS[rid]
        tests = self._outcomes[rid]
        statuses = {t.outcome for t in tests}
        if FAIL in statuses:
            status = FAIL
        elif DEVIATION in statuses:
            status = DEVIATION
        elif PASS in statuses:
            status = PASS
        elif SKIP in statuses:
            status = SKIP
        else:
            status = NOT_RUN
        details = [] if status == PASS else _unique(t.detail for t in tests if t.outcome == status and t.detail)
        return Verdict(rid, req.level, req.title, status, req.since, details, list(tests))

    @property
    def failed(self) -> bool:
        return any(v.status == FAIL for v in self.verdicts())

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in (PASS, FAIL, DEVIATION, SKIP, NOT_RUN)}
        for verdict in self.verdicts():
            counts[verdict.status] += 1
        return counts

    def render(self, width: int = 100) -> list[str]:
        return [line.text for line in self.render_lines(width)]

    def render_lines(self, width: int = 100) -> list[ReportLine]:
        """The table, line by line, each verdict line with its status (for colouring)."""
        mode = "strict" if self.strict else "default (SHOULD misses are deviations)"
        lines = [
            ReportLine(f"ASGI channel layer conformance: {self.layer_name}  [mode: {mode}]"),
            ReportLine(f"  requirement catalogue {CATALOGUE_VERSION}"),
        ]
        verdicts = self.verdicts()
        for area, area_title in AREAS.items():
            rows = [v for v in verdicts if v.requirement_id.split("-")[0] == area]
            if not rows:
                continue
            lines.append(ReportLine(f"  {area_title}"))
            for v in rows:
                title = _clip(v.title, 62)
                lines.append(ReportLine(f"    {v.requirement_id:<8} {v.level:<6} {v.status:<9} {title}", v.status))
                for detail in v.details[:2]:
                    wrapped = textwrap.wrap(" ".join(str(detail).split()), max(width - 33, 40)) or [""]
                    lines.append(ReportLine(f"{'':>29}-> {wrapped[0]}"))
                    lines.extend(ReportLine(f"{'':>32}{more}") for more in wrapped[1:8])
        counts = self.counts()
        lines.append(ReportLine("  " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)))
        return lines

    def to_json(self) -> str:
        return json.dumps(
            {
                "layer": self.layer_name,
                "strict": self.strict,
                "catalogue_version": CATALOGUE_VERSION,
                "counts": self.counts(),
                "requirements": [
                    {
                        "id": v.requirement_id,
                        "level": v.level,
                        "title": v.title,
                        "since": v.since,
                        "status": v.status,
                        "details": v.details,
                        "tests": [t.__dict__ for t in v.tests],
                    }
                    for v in self.verdicts()
                ],
            },
            indent=2,
        )


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
