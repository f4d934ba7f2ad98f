"""What one benchmark run measures: workloads, sizes (full and --quick), and who takes part."""

from __future__ import annotations

from dataclasses import dataclass

from bench import workloads, xfanout


@dataclass(frozen=True)
class Scenario:
    name: str
    run: object  # async callable(make_layer, contender, config, size) -> dict of figures
    full: object  # the size handed to run: a count, or (members, sends) for cross-process fan-out
    quick: object
    figures: tuple = (("rate", "msg/s"),)  # (key in the result, unit); "µs" means lower is better
    cross_process: bool = False  # sender and receiver are two processes meeting on a normal channel
    process_groups: bool = False  # a group's members are held by other processes than the sender
    fan_out: bool = False  # a group_send to many members: what a fan-out floor (floor-redis) runs


def applies(scenario: Scenario, contender) -> bool:
    """Whether ``contender`` can run ``scenario`` at all (an in-memory layer cannot reach another process)."""
    if scenario.cross_process and not contender.cross_process:
        return False
    if contender.fan_out_only and not scenario.fan_out:
        return False
    return not (scenario.process_groups and not contender.multi_process)


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


def _fanout_late(make_layer, contender, config, size):
    members, sends = size
    return workloads.fanout_late(make_layer, members, sends)


def _xfanout(pattern):
    async def run(make_layer, contender, config, size):
        members, sends = size
        return await xfanout.cross_process_fanout(make_layer, contender, config, members, sends, pattern)
    return run


def _xproc(workload):
    async def run(make_layer, contender, config, size):
        return await workload(make_layer, contender.dotted_path, config, size)
    return run


LATENCY = (("p50", "µs"), ("p99", "µs"))
FANOUT = (("rate", "deliveries/s"),)
XFANOUT = (("rate", "deliveries/s"), *LATENCY)  # latency: from the group_send to its last delivery

SCENARIOS = [
    Scenario("roundtrip", _simple(workloads.roundtrips), full=1500, quick=60),
    Scenario("pipelined", _simple(workloads.pipelined), full=4000, quick=200),
    # Fan-out sizes: 10,000 deliveries per figure. A fast layer delivers a few thousand in a few
    # milliseconds, a window where one scheduling hiccup moved a ratio from 3x to 5.5x run to run.
    Scenario("fanout-100", _fanout(100), full=100, quick=1, figures=FANOUT, fan_out=True),
    Scenario("fanout-1000", _fanout(1000), full=10, quick=1, figures=FANOUT, fan_out=True),
    # (members, sends): --quick reads 100 late members, not 1,000, each read a round trip on some layers.
    Scenario("fanout-100-late", _fanout_late, full=(100, 100), quick=(100, 1), figures=FANOUT, fan_out=True),
    Scenario("fanout-1000-late", _fanout_late, full=(1000, 10), quick=(100, 1), figures=FANOUT, fan_out=True),
    Scenario("senders-100", _simple(workloads.senders), full=3000, quick=200),
    # 1,000 samples: the p99 is the 10th worst, not the 3rd of 300, which one scheduling hiccup
    # of this shared machine moved by a third from run to run.
    Scenario("latency", _simple(workloads.latency), full=1000, quick=20, figures=LATENCY),
    Scenario("xproc", _xproc(workloads.cross_process), full=4000, quick=200, cross_process=True),
    Scenario("xproc-latency", _xproc(workloads.cross_process_latency), full=300, quick=20,
             figures=LATENCY, cross_process=True),
    # (members, sends): 1,000 members over 4 receiving processes; --quick keeps the 4 processes
    # but not the 1,000 members, whose group_adds would cost the gate seconds per layer.
    Scenario("xfanout-1000", _xfanout("waiting"), full=(1000, 20), quick=(40, 2), figures=XFANOUT,
             process_groups=True, fan_out=True),
    Scenario("xfanout-1000-late", _xfanout("late"), full=(1000, 10), quick=(40, 1), figures=XFANOUT,
             process_groups=True, fan_out=True),
]

SHARD_SCENARIO = Scenario("sharded", _simple(workloads.sharded), full=6000, quick=240)
SHARD_COUNTS = (1, 2, 3)
