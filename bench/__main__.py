"""``python -m bench [--quick] [--only NAME ...] [--workloads a,b]``: every layer through every workload, one run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench import nats_server
from bench.floor import measure_floor
from bench.layers import CONTENDERS
from bench.output import Row, table_lines, write_chart, write_json, write_markdown
from bench.plan import SCENARIOS, SHARD_COUNTS, SHARD_SCENARIO, applies

HERE = Path(__file__).parent
CLUSTER_MASTERS = 3  # the redis-cluster contender's cluster
SCENARIO_TIMEOUT = 180  # seconds for one repetition: a hung layer becomes an error row
COMPARISONS = {
    "inmemory": ["channels-inmemory"],
    "redis": ["channels_redis", "channels-nats", "floor-redis"],
    "redis-cluster": ["redis", "channels_redis"],
    "rabbitmq": ["channels_rabbitmq", "redis", "channels-nats"],
    "ipc": ["channels_redis", "redis"],
}
WORKLOADS = [s.name for s in SCENARIOS] + [SHARD_SCENARIO.name]


def workload_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(WORKLOADS)}")
    return names


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition: a smoke check")
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default 5, or 1 with --quick)")
    parser.add_argument("--only", nargs="+", metavar="LAYER", help="only these layers (and their peers)")
    parser.add_argument("--workloads", type=workload_list, metavar="A,B",
                        help=f"only these workloads, comma-separated: {', '.join(WORKLOADS)}")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="JSON results path")
    parser.add_argument("--chart", default=str(HERE / "results.png"), help="PNG chart path ('' for none)")
    parser.add_argument("--markdown", default=str(HERE / "results.md"), help="Markdown table path")
    return parser.parse_args(argv)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                         f"{elapsed:5.0f}s {text[:50]:<50}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def choose(only):
    chosen = [c for c in CONTENDERS if not only or c.name in only
              or any(c.name in COMPARISONS.get(name, []) for name in only)]
    usable, missing = [], {}
    for contender in chosen:
        why = contender.available()
        (missing.__setitem__(contender.name, why) if why else usable.append(contender))
    return usable, missing


@contextlib.contextmanager
def servers_for(contenders):
    from asgi_conformance import servers

    with contextlib.ExitStack() as stack:
        addresses = {}
        if any(c.server == "redis" for c in contenders):
            addresses["redis"] = stack.enter_context(servers.redis_servers(max(SHARD_COUNTS))).urls
        if any(c.server == "redis-cluster" for c in contenders):
            addresses["redis-cluster"] = stack.enter_context(
                servers.servers_for("redis-cluster", CLUSTER_MASTERS)).config_entries
        if any(c.server == "rabbitmq" for c in contenders):
            addresses["rabbitmq"] = stack.enter_context(servers.rabbitmq_server()).url
        if any(c.server == "nats" for c in contenders):
            addresses["nats"] = stack.enter_context(nats_server.nats_server())
        yield addresses


@dataclasses.dataclass
class Job:
    """One (workload, layer) pair of the run and the figures its repetitions gave so far."""

    scenario: object
    contender: object
    config: dict
    size: object
    label: str
    figures: dict = dataclasses.field(default_factory=dict)
    error: str | None = None

    def run_once(self, progress, rep: int) -> None:
        """One repetition; a broken layer becomes an error row, never the end of the whole run."""
        progress.step(f"{self.label} {self.contender.name} #{rep + 1}")
        if self.error:
            return
        factory = self.contender.factory()

        def make_layer(**overrides):
            return factory(**{**self.config, **self.contender.own_keys(overrides)})

        try:
            result = asyncio.run(asyncio.wait_for(
                self.scenario.run(make_layer, self.contender, self.config, self.size), SCENARIO_TIMEOUT))
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"
            return
        for key, _ in self.scenario.figures:
            self.figures.setdefault(key, []).append(result[key])

    def rows(self) -> list[Row]:
        return [Row(self.label, key, unit, self.contender.name, error=self.error) if self.error
                else Row(self.label, key, unit, self.contender.name, samples=self.figures[key])
                for key, unit in self.scenario.figures]


def run_interleaved(jobs: list[Job], repeat: int, progress) -> list[Row]:
    """Repetition 1 of every job, then repetition 2 of every job...: a machine that slows down
    or speeds up during the run then weighs on a layer and its peer alike, not on whichever ran last."""
    for rep in range(repeat):
        for job in jobs:
            job.run_once(progress, rep)
    return [row for job in jobs for row in job.rows()]


def plan(contenders, workloads=None):
    """(scenario, contender, shards, label) for everything this run measures."""
    jobs = []
    for scenario in SCENARIOS:
        if workloads and scenario.name not in workloads:
            continue
        for contender in contenders:
            if applies(scenario, contender):
                jobs.append((scenario, contender, 1, scenario.name))
    if workloads and SHARD_SCENARIO.name not in workloads:
        return jobs
    for contender in contenders:
        if contender.name == "redis":
            for shards in SHARD_COUNTS:
                jobs.append((SHARD_SCENARIO, contender, shards, f"sharded-{shards}"))
        elif contender.name == "redis-cluster":  # beside redis's sharded-3: 3 masters vs 3 shards
            jobs.append((SHARD_SCENARIO, contender, CLUSTER_MASTERS, f"sharded-{CLUSTER_MASTERS}"))
        elif contender.name == "channels_redis":
            # On 2+ shards channels_redis loses messages to the wrong shard and its receive times
            # out (see docs/conformance.md); one shard gives the ratio.
            jobs.append((SHARD_SCENARIO, contender, 1, "sharded-1"))
    return jobs


def versions() -> dict:
    found = {}
    for package in ("channels", "channels_redis", "channels_rabbitmq", "channels-nats", "redis", "hiredis", "pika",
                    "nats-py", "posix_ipc", "msgpack"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    if nats_server.version():
        found["nats-server"] = nats_server.version()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        found["redis-server"] = next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"], capture_output=True,
                             text=True, timeout=10).stdout
        if out:
            found["rabbitmq-server"] = out.strip()
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    # A plain kill must still stop the servers this run started (their context managers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # 5, not 3: a peer's fan-out moved by a third between repetitions of one run, and a median of
    # 3 let one slow repetition on either side move the ratio from 1.3x to 2.2x.
    repeat = args.repeat or (1 if args.quick else 5)
    contenders, missing = choose(args.only)
    for name, why in missing.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    run_id = secrets.token_hex(3)
    with servers_for(contenders) as addresses:
        floors = measure_floor(addresses, n=200 if args.quick else 3000, repeat=repeat)
        jobs = []
        for scenario, contender, shards, label in plan(contenders, args.workloads):
            config = contender.config(addresses, shards)
            if "prefix" in config:
                config["prefix"] = f"{config['prefix']}{run_id}"
            jobs.append(Job(scenario, contender, config, scenario.quick if args.quick else scenario.full, label))
        progress = Progress(len(jobs) * repeat)
        rows = run_interleaved(jobs, repeat, progress)
        progress.close()
    meta = {
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
        "repeat": repeat,
        "workloads": args.workloads or WORKLOADS,
        "versions": versions(),
        "skipped": missing,
        "floors": floors,
    }
    print("\n".join(table_lines(rows, COMPARISONS)))
    for what, value in floors.items():
        print(f"floor: {what}: {value:,}")
    write_json(args.out, meta, rows, COMPARISONS)
    write_markdown(args.markdown, meta, rows, COMPARISONS)
    if args.chart:
        write_chart(args.chart, rows)
    print(f"\nwrote {args.out}, {args.markdown}" + (f", {args.chart}" if args.chart else ""))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
