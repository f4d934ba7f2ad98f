"""What one benchmark run measures: workloads, sizes (full and --quick), and who takes part."""

from __future__ import annotations

from dataclasses import dataclass

from bench import workloads


@dataclass(frozen=True)
class Scenario:
    name: str
    run: object  # async callable(make_layer, contender, config, size) -> dict of figures
    full: int
    quick: int
    figures: tuple = (("rate", "msg/s"),)  # (key in the result, unit); "µs" means lower is better
    cross_process: bool = False


def higher_is_better(unit: str) -> bool:
    return unit != "µs"


def _simple(workload):
    async def run(make_layer, contender, config, size):
        return await workload(make_layer, size)
    return run


def _fanout(members):
    async def run(make_layer, contender, config, size):
        return await workloads.fanout(make_layer, members, sends=size)
    return run


def _xproc(workload):
    async def run(make_layer, contender, config, size):
        return await workload(make_layer, contender.dotted_path, config, size)
    return run


LATENCY = (("p50", "µs"), ("p99", "µs"))

SCENARIOS = [
    Scenario("roundtrip", _simple(workloads.roundtrips), full=1500, quick=60),
    Scenario("pipelined", _simple(workloads.pipelined), full=4000, quick=200),
    Scenario("fanout-100", _fanout(100), full=5, quick=1, figures=(("rate", "deliveries/s"),)),
    Scenario("fanout-1000", _fanout(1000), full=2, quick=1, figures=(("rate", "deliveries/s"),)),
    Scenario("latency", _simple(workloads.latency), full=300, quick=20, figures=LATENCY),
    Scenario("xproc", _xproc(workloads.cross_process), full=4000, quick=200, cross_process=True),
    Scenario("xproc-latency", _xproc(workloads.cross_process_latency), full=300, quick=20,
             figures=LATENCY, cross_process=True),
]

SHARD_SCENARIO = Scenario("sharded", _simple(workloads.sharded), full=6000, quick=240)
SHARD_COUNTS = (1, 2, 3)
