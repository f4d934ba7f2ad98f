"""``python -m tools.matrix``: the suite against many layers, one table.

Runs the suite once per layer (each in its own pytest process, on servers started once for
the whole matrix) and writes ``conformance.md`` and ``conformance.html``: a row per
requirement, a column per layer, with the failing assertion in a footnote (Markdown) or on
hover (HTML). A maintainer's tool, run from the repository root: it is not part of the plugin.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from asgi_conformance import servers
from asgi_conformance.requirements import REQUIREMENTS, Requirement

Report = dict[str, Any]  # a run's JSON report, or {"error": why there is none}


@dataclass(frozen=True)
class Column:
    name: str
    dotted_path: str
    server: str | None = None  # "redis", "redis:3" or "rabbitmq"
    config_key: str | None = None
    args: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)


class Cell(NamedTuple):
    """One layer's verdict on one requirement, and what explains it (assertions, skip reasons)."""

    status: str
    details: list[str]


DEFAULT_COLUMNS = [
    Column("ours: inmemory", "reference_layers.inmemory.InMemoryChannelLayer", args=("--asgi-single-process",)),
    Column("ours: ipc", "reference_layers.ipc.IPCChannelLayer", config={"prefix": "matrix"}),
    Column("ours: redis", "reference_layers.redis.RedisChannelLayer", server="redis"),
    Column("ours: redis ×3", "reference_layers.redis.RedisChannelLayer", server="redis:3"),
    Column("ours: rabbitmq", "reference_layers.rabbitmq.RabbitMQChannelLayer", server="rabbitmq"),
    Column("channels InMemory", "channels.layers.InMemoryChannelLayer", args=("--asgi-single-process",)),
    Column("channels_redis", "channels_redis.core.RedisChannelLayer", server="redis"),
    Column("channels_redis ×3", "channels_redis.core.RedisChannelLayer", server="redis:3"),
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
SERVER_KEYS = {"redis": "hosts", "rabbitmq": "url"}
SHORT = {"PASS": "pass", "FAIL": "FAIL", "DEVIATION": "dev", "SKIP": "skip", "NOT RUN": "-"}


def run_column(column: Column, addresses: dict[str, list[str]], workdir: Path, strict: bool) -> Report:
    """One pytest run of the suite against one layer; returns its JSON report (or an error)."""
    config = dict(column.config)
    if column.server:
        kind, _, count = column.server.partition(":")
        urls = addresses[kind][: int(count or 1)]
        key = column.config_key or SERVER_KEYS[kind]
        config[key] = urls if kind == "redis" else urls[0]
    report = workdir / f"{abs(hash(column.name))}.json"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--asgi-layer={column.dotted_path}",
            f"--asgi-report={report}", "--asgi-layer-config=" + json.dumps(config), *column.args]
    if strict:
        argv.append("--asgi-strict")
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=1800)
    if not report.exists():
        lines = (done.stdout + done.stderr).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    result: Report = json.loads(report.read_text())
    return result


@contextlib.contextmanager
def started_servers(columns: Sequence[Column]) -> Iterator[dict[str, list[str]]]:
    """The servers the columns need, started once for all of them: {kind: URLs}."""
    with contextlib.ExitStack() as stack:
        addresses: dict[str, list[str]] = {}
        wanted = [column.server.partition(":") for column in columns if column.server]
        kinds = {kind for kind, _, _ in wanted}
        if "redis" in kinds:
            shards = max(int(count or 1) for kind, _, count in wanted if kind == "redis")
            addresses["redis"] = stack.enter_context(servers.redis_servers(shards)).urls
        if "rabbitmq" in kinds:
            addresses["rabbitmq"] = [stack.enter_context(servers.rabbitmq_server()).url]
        yield addresses


def cells(results: dict[str, Report]) -> Iterator[tuple[Requirement, dict[str, Cell]]]:
    """(requirement, {column: cell}) rows, in catalogue order."""
    for rid, requirement in REQUIREMENTS.items():
        row = {}
        for name, report in results.items():
            if "error" in report:
                row[name] = Cell("ERROR", [report["error"]])
                continue
            entry = next(r for r in report["requirements"] if r["id"] == rid)
            row[name] = Cell(entry["status"], entry["details"])
        yield requirement, row


def markdown(results: dict[str, Report]) -> str:
    names = list(results)
    lines = ["# Conformance matrix", "",
             "Generated by `python -m tools.matrix`: every layer through the same suite. "
             "pass / FAIL (a MUST missed, or SHOULD in strict) / dev (a SHOULD missed) / skip (reason in the note). "
             "Findings in the public layers, checked by hand against their code: [findings.md](findings.md).", "",
             "| id | level | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    notes = []
    for requirement, row in cells(results):
        shown = []
        for name in names:
            status, details = row[name]
            text = SHORT.get(status, status)
            if status not in ("PASS", "NOT RUN") and details:
                notes.append(f"{requirement.id} on {name}: {' / '.join(details)[:400]}")
                text += f" [{len(notes)}]"
            shown.append(text)
        lines.append(f"| {requirement.id} | {requirement.level} | " + " | ".join(shown) + " |")
    lines += ["", "## Notes", ""] + [f"{i}. {note}".replace("\n", " ") for i, note in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def html_page(results: dict[str, Report]) -> str:
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
            "<p>Hover a cell for the failing assertion or the skip reason.</p>"
            f"<table><tr><th>id</th><th>level</th>{head}</tr>{''.join(rows)}</table>\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.matrix", description=__doc__)
    parser.add_argument("--out", default="docs", help="folder for conformance.md and conformance.html")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only the columns whose name contains one of these")
    parser.add_argument("--strict", action="store_true", help="run every layer in strict mode")
    args = parser.parse_args(argv)
    columns = [c for c in DEFAULT_COLUMNS if not args.only or any(o in c.name for o in args.only)]
    results: dict[str, Report] = {}
    with started_servers(columns) as addresses, tempfile.TemporaryDirectory() as workdir:
        for column in columns:
            print(f"running the suite against {column.name} ...", file=sys.stderr, flush=True)
            results[column.name] = run_column(column, addresses, Path(workdir), args.strict)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "conformance.md").write_text(markdown(results))
    (out / "conformance.html").write_text(html_page(results))
    print(f"wrote {out / 'conformance.md'} and {out / 'conformance.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
