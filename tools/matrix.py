"""``python -m tools.matrix``: the suite against many layers, one table.

Runs the suite once per layer (each in its own pytest process, on servers started once for
the whole matrix) and writes ``conformance.md`` and ``conformance.html``: a row per
requirement, a column per layer, with the failing assertion in a footnote (Markdown) or on
hover (HTML). A maintainer's tool, run from the repository root: it is not part of the plugin.

The FAULT area restarts, pauses and cuts off the server, so it cannot share the matrix's servers:
with ``--faults`` each server-backed column gets a second run of the FAULT area alone, on a
server that run starts itself (``--asgi-server``), and its FAULT verdicts replace the column's.
``--faults-only`` runs just those, keeping every other verdict from the page already written.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from asgi_conformance import servers
from asgi_conformance.requirements import REQUIREMENTS, Requirement
from tools.matrix_columns import ECOSYSTEM_COLUMNS, LISTED_KINDS, SERVER_KEYS, Column

__all__ = ["COLUMNS", "DEFAULT_COLUMNS", "Column", "main"]

Report = dict[str, Any]  # a run's JSON report, or {"error": why there is none}


class Cell(NamedTuple):
    """One layer's verdict on one requirement, and what explains it (assertions, skip reasons)."""

    status: str
    details: list[str]


DEFAULT_COLUMNS = [
    Column("ours: inmemory", "reference_layers.inmemory.InMemoryChannelLayer", args=("--asgi-single-process",)),
    Column("ours: ipc", "reference_layers.ipc.IPCChannelLayer", config={"prefix": "matrix"}),
    Column("ours: redis", "reference_layers.redis.RedisChannelLayer", server="redis"),
    Column("ours: redis ×3", "reference_layers.redis.RedisChannelLayer", server="redis:3"),
    Column("ours: redis sentinel", "reference_layers.redis.RedisChannelLayer", server="redis-sentinel"),
    Column("ours: rabbitmq", "reference_layers.rabbitmq.RabbitMQChannelLayer", server="rabbitmq"),
    Column("channels InMemory", "channels.layers.InMemoryChannelLayer", args=("--asgi-single-process",)),
    Column("channels_redis", "channels_redis.core.RedisChannelLayer", server="redis"),
    Column("channels_redis ×3", "channels_redis.core.RedisChannelLayer", server="redis:3"),
    Column("channels_redis sentinel", "channels_redis.core.RedisChannelLayer", server="redis-sentinel"),
    Column("channels_redis pubsub", "channels_redis.pubsub.RedisPubSubChannelLayer", server="redis", args=(
        "--asgi-unsupported=backlog=Redis Pub/Sub reaches only receivers already subscribed",
        "--asgi-unsupported=capacity=Redis Pub/Sub queues nothing, so nothing fills up",
        "--asgi-unsupported=expiry=Redis Pub/Sub stores no message that could expire")),
    Column("channels_rabbitmq", "channels_rabbitmq.core.RabbitmqChannelLayer", server="rabbitmq",
           config_key="host", args=(
               "--asgi-unsupported=normal-channels=channels_rabbitmq refuses normal channels by design",
               "--asgi-unsupported=capacity=channels_rabbitmq sizes queues with local_capacity/remote_capacity, "
               "not the capacity keyword the suite sets")),
]
COLUMNS = [*DEFAULT_COLUMNS, *ECOSYSTEM_COLUMNS]
SHORT = {"PASS": "pass", "FAIL": "FAIL", "DEVIATION": "dev", "SKIP": "skip", "NOT RUN": "-"}
FAULT_IDS = frozenset(rid for rid, requirement in REQUIREMENTS.items() if requirement.area == "FAULT")
# Asks a server-less column's run for the FAULT area too, so its FAULT-* SKIPs give the plugin's
# reason for that layer (it has no server to fault) rather than the options the run lacked.
FAULTS_WITHOUT_A_SERVER = ("--asgi-faults",)
TEST_TIMEOUT = 300  # pytest-timeout's limit on one test in a matrix run: a hanging layer cannot stall it
RUN_TIMEOUT = 3600  # and on one whole run of the suite
REPO_ROOT = Path(__file__).resolve().parent.parent  # on the runs' path: columns name factories in tools/


def run_column(column: Column, addresses: dict[str, list[Any]], workdir: Path, strict: bool,
               extra: Sequence[str] = ()) -> Report:
    """One pytest run of the suite against one layer; returns its JSON report (or an error).
    ``extra``: more options for the run (the delivery timeout)."""
    config = dict(column.config)
    if column.server:
        kind, _, count = column.server.partition(":")
        entries = addresses[kind][: int(count or 1)]
        key = column.config_key or SERVER_KEYS[kind]
        config[key] = entries if kind in LISTED_KINDS else entries[0]
    faults = () if column.server else FAULTS_WITHOUT_A_SERVER
    return run_suite(column, config, (*faults, *column.args, *extra), workdir / f"{abs(hash(column.name))}.json",
                     strict)


def run_fault_area(column: Column, workdir: Path, strict: bool) -> Report:
    """The FAULT area alone, on a server this run starts and faults (none for a server-less column)."""
    argv = (*column.fault_args, "--asgi-faults", "--asgi-requirement=FAULT", *column.args)
    return run_suite(column, dict(column.config), argv, workdir / f"{abs(hash(column.name))}-faults.json", strict)


def run_suite(column: Column, config: dict[str, Any], args: Sequence[str], report: Path, strict: bool) -> Report:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--timeout={TEST_TIMEOUT}",
            f"--asgi-layer={column.dotted_path}", f"--asgi-report={report}",
            "--asgi-layer-config=" + json.dumps(config), *args]
    if strict:
        argv.append("--asgi-strict")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(argv, cwd=report.parent, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"the run did not end within {RUN_TIMEOUT} s"}
    if not report.exists():
        lines = (done.stdout + done.stderr).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    result: Report = json.loads(report.read_text())
    return result


def has_fault_verdicts(report: Report) -> bool:
    return any(row["id"] in FAULT_IDS and row["status"] != "NOT RUN" for row in report.get("requirements", ()))


def with_fault_verdicts(report: Report, faults: Report) -> Report:
    """The column's report with its FAULT-* rows taken from the FAULT run (an error fills those rows)."""
    if "error" in report:
        return report
    if "error" in faults:
        fault_rows = {rid: {"id": rid, "status": "ERROR", "details": [faults["error"]]} for rid in FAULT_IDS}
    else:
        fault_rows = {row["id"]: row for row in faults["requirements"] if row["id"] in FAULT_IDS}
    rows = [fault_rows.get(row["id"], row) for row in report["requirements"]]
    rows += [row for rid, row in fault_rows.items() if rid not in {r["id"] for r in rows}]
    return {**report, "requirements": rows}


@contextlib.contextmanager
def started_servers(columns: Sequence[Column]) -> Iterator[dict[str, list[Any]]]:
    """The servers the columns need, started once for all of them: {kind: config entries (URLs,
    or a Sentinel set's hosts form)}."""
    with contextlib.ExitStack() as stack:
        addresses: dict[str, list[Any]] = {}
        wanted = [column.server.partition(":") for column in columns if column.server]
        kinds = {kind for kind, _, _ in wanted}
        if "redis" in kinds:
            shards = max(int(count or 1) for kind, _, count in wanted if kind == "redis")
            addresses["redis"] = stack.enter_context(servers.redis_servers(shards)).urls
        if "rabbitmq" in kinds:
            addresses["rabbitmq"] = [stack.enter_context(servers.rabbitmq_server()).url]
        for kind in sorted(kinds - {"redis", "rabbitmq"}):
            count = max(int(count or 1) for k, _, count in wanted if k == kind)
            addresses[kind] = stack.enter_context(servers.servers_for(kind, count)).config_entries
        yield addresses


def cells(results: dict[str, Report]) -> Iterator[tuple[Requirement, dict[str, Cell]]]:
    """(requirement, {column: cell}) rows, in catalogue order."""
    for rid, requirement in REQUIREMENTS.items():
        row = {}
        for name, report in results.items():
            if "error" in report:
                row[name] = Cell("ERROR", [report["error"]])
                continue
            entry = next((r for r in report["requirements"] if r["id"] == rid), None)
            row[name] = Cell(entry["status"], entry["details"]) if entry else Cell("NOT RUN", [])
        yield requirement, row


@dataclass
class Page:
    """What the Markdown page shows: the reports, how long each FAULT run took, where the rows came from."""

    results: dict[str, Report]
    fault_seconds: dict[str, float] = field(default_factory=dict)
    provenance: str = ""


def markdown(page: Page) -> str:
    names = list(page.results)
    lines = ["# Conformance matrix", "",
             "Generated by `python -m tools.matrix --faults`: every layer through the same suite. "
             "pass / FAIL (a MUST missed, or SHOULD in strict) / dev (a SHOULD missed) / skip (reason in the note). "
             "Findings in the public layers, checked by hand against their code: [findings.md](findings.md)."
             + (f" {page.provenance}" if page.provenance else ""), "",
             "| id | level | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    notes = []
    for requirement, row in cells(page.results):
        shown = []
        for name in names:
            status, details = row[name]
            text = SHORT.get(status, status)
            if status not in ("PASS", "NOT RUN") and details:
                notes.append(f"{requirement.id} on {name}: {' / '.join(details)[:400]}")
                text += f" [{len(notes)}]"
            shown.append(text)
        lines.append(f"| {requirement.id} | {requirement.level} | " + " | ".join(shown) + " |")
    if page.fault_seconds:
        lines += ["", FAULT_RUNS_HEADING, "",
                  "Each server-backed column's FAULT area ran alone, on a server that run started and faulted "
                  "(`--asgi-server=KIND --asgi-faults`, default fault timeout); wall-clock time per run:", ""]
        lines += [f"- {name}: {seconds:.0f} s" for name, seconds in page.fault_seconds.items()]
    lines += ["", NOTES_HEADING, ""] + [f"{i}. {note}".replace("\n", " ") for i, note in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


FAULT_RUNS_HEADING = "## FAULT runs"
NOTES_HEADING = "## Notes"
STATUS_OF_SHORT = {short: status for status, short in SHORT.items()}


def read_markdown(text: str) -> Page:
    """A page this tool wrote, read back (each cell's details as the one clipped note it shows),
    so that ``--faults-only`` can keep the verdicts of the last full run."""
    lines = text.splitlines()
    header = next((line for line in lines if line.startswith("| id | level |")), None)
    if header is None:
        return Page({})
    names = [name.strip() for name in header.strip("| ").split(" | ")[2:]]
    section = {heading: lines.index(heading) for heading in (FAULT_RUNS_HEADING, NOTES_HEADING) if heading in lines}
    notes = {}
    for line in lines[section.get(NOTES_HEADING, len(lines)) + 1:]:
        number, dot, note = line.partition(". ")
        if dot and number.isdigit():
            notes[number] = note
    results: dict[str, Report] = {name: {"requirements": []} for name in names}
    for line in lines:
        fields = [f.strip() for f in line.strip("| ").split(" | ")]
        if len(fields) != len(names) + 2 or fields[0] not in REQUIREMENTS:
            continue
        rid = fields[0]
        for name, shown in zip(names, fields[2:]):
            short, _, number = shown.partition(" [")
            note = notes.get(number.rstrip("]"), "").removeprefix(f"{rid} on {name}: ")
            results[name]["requirements"].append(
                {"id": rid, "status": STATUS_OF_SHORT.get(short, short), "details": [note] if note else []})
    fault_seconds = {}
    if FAULT_RUNS_HEADING in section:
        for line in lines[section[FAULT_RUNS_HEADING] + 1: section.get(NOTES_HEADING, len(lines))]:
            name, colon, seconds = line.removeprefix("- ").rpartition(": ")
            if line.startswith("- ") and colon and seconds.endswith(" s"):
                fault_seconds[name] = float(seconds.removesuffix(" s"))
    return Page(results, fault_seconds)


def html_page(results: dict[str, Report], provenance: str = "") -> str:
    names = list(results)
    colours = {"PASS": "#c8f0c8", "FAIL": "#f6b6b6", "DEVIATION": "#f9e3a3", "SKIP": "#e4e4e4", "ERROR": "#f6b6b6"}
    rows = []
    for requirement, row in cells(results):
        tds = []
        for name in names:
            status, details = row[name]
            title = html.escape(" / ".join(details), quote=True)
            tds.append(f'<td style="background:{colours.get(status, "#fff")}" title="{title}">{SHORT.get(status, status)}</td>')
        rows.append(f"<tr><th title=\"{html.escape(requirement.title)}\">{requirement.id}</th>"
                    f"<td>{requirement.level}</td>{''.join(tds)}</tr>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    return ("<!doctype html><meta charset=utf-8><title>ASGI channel layer conformance</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
            "table{border-collapse:collapse}</style><h1>ASGI channel layer conformance</h1>"
            f"<p>Hover a cell for the failing assertion or the skip reason. {html.escape(provenance)}</p>"
            f"<table><tr><th>id</th><th>level</th>{head}</tr>{''.join(rows)}</table>\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.matrix", description=__doc__)
    parser.add_argument("--out", default="docs", help="folder for conformance.md and conformance.html")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only the columns whose name contains one of these; the other columns of "
                             "OUT/conformance.md are kept as they are")
    parser.add_argument("--strict", action="store_true", help="run every layer in strict mode")
    parser.add_argument("--delivery-timeout", type=float, metavar="SECONDS",
                        help="how long a message may take to arrive (the plugin's default unless given; the page "
                             "says so when given)")
    parser.add_argument("--faults", action="store_true",
                        help="also run each server-backed column's FAULT area, on a server of its own (minutes)")
    parser.add_argument("--faults-only", action="store_true",
                        help="run only the FAULT areas; keep every other verdict from OUT/conformance.md")
    parser.add_argument("--keep-others", action="store_true",
                        help="with --only: keep the other columns' verdicts from OUT/conformance.md")
    args = parser.parse_args(argv)
    columns = [c for c in COLUMNS if not args.only or any(o in c.name for o in args.only)]
    out = Path(args.out)
    extra = () if args.delivery_timeout is None else (f"--asgi-delivery-timeout={args.delivery_timeout:g}",)
    with tempfile.TemporaryDirectory() as workdir:
        if args.faults_only:
            page = read_markdown((out / "conformance.md").read_text()) if (out / "conformance.md").exists() else Page({})
            page.provenance = (f"FAULT-* rows from a `--faults-only` run of {time.strftime('%Y-%m-%d', time.gmtime())}; "
                               "every other row is kept from the last full run.")
        else:
            page = Page({})
            if args.only and (out / "conformance.md").exists():  # the columns not run stay as they were
                kept = read_markdown((out / "conformance.md").read_text())
                page = Page({name: report for name, report in kept.results.items()
                             if name not in {c.name for c in columns}},
                            {name: s for name, s in kept.fault_seconds.items() if name not in {c.name for c in columns}})
                page.provenance = (f"Columns {', '.join(c.name for c in columns)} from a `--only` run of "
                                   f"{time.strftime('%Y-%m-%d', time.gmtime())}; the others are kept from earlier runs.")
            with started_servers(columns) as addresses:
                for column in columns:
                    print(f"running the suite against {column.name} ...", file=sys.stderr, flush=True)
                    page.results[column.name] = run_column(column, addresses, Path(workdir), args.strict, extra)
        if args.faults or args.faults_only:
            run_fault_areas(page, columns, Path(workdir), args.strict)
    if args.keep_others:
        page = kept_with(page, out / "conformance.md", [c.name for c in columns])
    page.results = {c.name: page.results[c.name] for c in COLUMNS if c.name in page.results}
    if extra and not args.faults_only:
        page.provenance = (f"{page.provenance} " if page.provenance else "") + \
            f"Messages were given {args.delivery_timeout:g} s to arrive (the suite's default: 5 s)."
    out.mkdir(parents=True, exist_ok=True)
    (out / "conformance.md").write_text(markdown(page))
    (out / "conformance.html").write_text(html_page(page.results, page.provenance))
    print(f"wrote {out / 'conformance.md'} and {out / 'conformance.html'}", file=sys.stderr)
    return 0


def kept_with(page: Page, written: Path, names: Sequence[str]) -> Page:
    """The page on disk with ``page``'s columns put in (a run of a few columns, the rest kept)."""
    kept = read_markdown(written.read_text()) if written.exists() else Page({})
    kept.results.update(page.results)
    kept.fault_seconds.update(page.fault_seconds)
    kept.provenance = (f"Columns {', '.join(names)} from a run of {time.strftime('%Y-%m-%d', time.gmtime())}; "
                       "the others kept from the last full run.")
    return kept


def run_fault_areas(page: Page, columns: Sequence[Column], workdir: Path, strict: bool) -> None:
    """Each column's FAULT run, its verdicts merged into the column and its wall-clock time noted.
    A server-less column's run only SKIPs, but it gives the plugin's reason for that layer."""
    for column in columns:
        if not column.server and has_fault_verdicts(page.results.get(column.name, {})):
            continue  # its suite run already asked for the FAULT area, and SKIPped it saying why
        print(f"running the FAULT area against {column.name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        faults = run_fault_area(column, workdir, strict)
        if column.server:
            page.fault_seconds[column.name] = time.monotonic() - started
        page.results[column.name] = with_fault_verdicts(page.results.get(column.name, {"requirements": []}), faults)


if __name__ == "__main__":
    sys.exit(main())
