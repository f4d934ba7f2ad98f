"""Real traffic between two processes on the IPC layer: ping-pong one message at a time (every
receive waits, so every message needs a cross-process wake-up) and a stream pushed through a
small capacity (the receiver alternates between finding messages queued and waiting).

Regression: the benchmark's ping-pong hung on its last round. The cause was the far side
flushing the layer as it left (flush empties every channel, so the last reply vanished before
the near side took it), not the layer; ``test_bench_ping_pong_completes`` runs that very
workload. Generous per-round timeouts: these tests prove nothing is lost, not speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from reference_layers.ipc import ChannelFull, IPCChannelLayer
from reference_layers.ipc.consistency import check

from .ipc_helpers import CHILD, REPO, remove_segment, unique_prefix

pytestmark = pytest.mark.timeout(300)
ROUND_TIMEOUT = 30  # seconds for one message; a lost wake-up shows up as a timeout here


@pytest.fixture
def prefix():
    name = unique_prefix("xproc")
    yield name
    remove_segment(name)


class FarSide:
    """tests/ipc_child.py echo|sink, run to completion."""

    def __init__(self, prefix: str, action: str, channel: str, reply: str, rounds: int):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("ASGI_IPC_TEST_PAUSE_AT", None)
        self.process = subprocess.Popen([sys.executable, str(CHILD), prefix, action, channel, reply, str(rounds)],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise AssertionError(f"far side did not start: {line!r} {self.process.stderr.read()}")

    def result(self) -> list:
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


def test_ping_pong_across_processes(prefix):
    rounds = 300
    far = FarSide(prefix, "echo", "xproc.ping", "xproc.pong", rounds)
    layer = IPCChannelLayer(prefix=prefix)

    async def ping_pong():
        replies = []
        for index in range(rounds):
            await layer.send("xproc.ping", {"type": "test.ping", "n": index})
            reply = await asyncio.wait_for(layer.receive("xproc.pong"), ROUND_TIMEOUT)
            replies.append(reply["n"])
        return replies

    try:
        assert asyncio.run(ping_pong()) == list(range(rounds))
        assert far.result() == list(range(rounds))
        assert check(layer._current().segment) == []
    finally:
        far.stop()
        layer.close_sync()


def test_a_receive_that_missed_a_poked_message_is_poked_again_by_the_same_sender(prefix):
    """A sender process pokes each *arm* of a waiting receive once. Two receives of one loop
    wait on a channel; one poke wakes both, one takes the message, the other finds nothing and
    waits again. That new wait is a new arm: the same sender's next message must wake it."""
    rounds = 5
    far = FarSide(prefix, "echo", "xproc.go", "xproc.reply", rounds)
    layer = IPCChannelLayer(prefix=prefix)

    async def scenario():
        replies = []
        pending = {asyncio.ensure_future(layer.receive("xproc.reply")) for _ in range(2)}
        for index in range(rounds):
            await asyncio.sleep(0)  # every pending receive runs up to its wait (and arms)
            await layer.send("xproc.go", {"type": "test.go", "n": index})
            done, pending = await asyncio.wait(pending, timeout=ROUND_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            assert len(done) == 1, f"round {index}: {len(done)} receives returned"
            replies.append(done.pop().result()["n"])
            pending.add(asyncio.ensure_future(layer.receive("xproc.reply")))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return replies

    try:
        assert asyncio.run(scenario()) == list(range(rounds))
        assert far.result() == list(range(rounds))
        assert check(layer._current().segment) == []
    finally:
        far.stop()
        layer.close_sync()


def test_stream_through_a_small_capacity_across_processes(prefix):
    count = 2000
    far = FarSide(prefix, "sink", "xproc.stream", "-", count)
    layer = IPCChannelLayer(prefix=prefix, capacity=10)

    async def stream():
        for index in range(count):
            while True:
                try:
                    await layer.send("xproc.stream", {"type": "test.stream", "n": index})
                    break
                except ChannelFull:
                    await asyncio.sleep(0.0005)

    try:
        asyncio.run(asyncio.wait_for(stream(), 120))
        assert far.result() == list(range(count))  # all of them, in order, none twice
        assert asyncio.run(layer.statistics(["xproc.stream"])).channels["xproc.stream"].waiting == 0
        assert check(layer._current().segment) == []
    finally:
        far.stop()
        layer.close_sync()


def test_bench_ping_pong_completes(prefix):
    from bench import workloads

    config = {"prefix": prefix}

    def make_layer(**overrides):
        return IPCChannelLayer(**{**config, **overrides})

    async def run():
        return await asyncio.wait_for(workloads.cross_process_latency(
            make_layer, "reference_layers.ipc.IPCChannelLayer", config, 200), 200)

    figures = asyncio.run(run())
    assert set(figures) == {"p50", "p99"} and 0 < figures["p50"] <= figures["p99"]


@pytest.mark.parametrize("pattern", ["waiting", "late"])
def test_bench_cross_process_fanout_past_the_default_capacity_completes(prefix, pattern):
    """Regression: xfanout-1000 hung on ipc. Its 1,000 members (250 a process) were more than
    the sender's default capacity of 100 a process, since only the receiving processes were
    given a raised one; the sender judges a process's room, so 150 copies a process were
    missed silently (CAP-5) and the bench waited for them. 120 a process is past 100."""
    from bench import xfanout
    from bench.layers import BY_NAME

    contender = BY_NAME["ipc"]
    config = {"prefix": prefix}

    def make_layer(**overrides):
        return IPCChannelLayer(**{**config, **contender.own_keys(overrides)})

    async def run():
        return await asyncio.wait_for(xfanout.cross_process_fanout(
            make_layer, contender, config, 120 * xfanout.PROCESSES, 2, pattern), 200)

    figures = asyncio.run(run())  # returns only once every member of every process had every copy
    assert set(figures) == {"rate", "p50", "p99"} and figures["rate"] > 0


def test_a_group_send_wakes_hundreds_of_waiting_members_of_another_process(prefix):
    """One group_send pokes each waker once, naming all its channels (wakeups.py): 600 members
    waiting in one far process take more than one datagram of names; every copy arrives, for
    each of two sends, and nothing is missed for lack of room."""
    from bench.xproc import build  # the far side: bench.xmembers, every member waiting in receive()

    members, sends = 600, 2
    config = {"prefix": prefix, "capacity": members + 100}
    group = "xproc-many"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    far = subprocess.Popen([sys.executable, "-m", "bench.xmembers", "reference_layers.ipc.IPCChannelLayer",
                            json.dumps(config), group, str(members), str(sends), "waiting"],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    layer = build("reference_layers.ipc.IPCChannelLayer", config)

    async def scenario():
        reports = []
        for n in range(sends):
            await layer.group_send(group, {"type": "test.many", "n": n})
            line = await asyncio.wait_for(asyncio.to_thread(far.stdout.readline), ROUND_TIMEOUT)
            reports.append(json.loads(line)["n"])  # printed once all 600 members have copy n
        return reports

    try:
        assert far.stdout.readline().strip() == "ready", far.stderr.read()
        assert asyncio.run(scenario()) == list(range(sends))
        assert asyncio.run(layer.statistics()).group_deliveries_missed == 0
        assert far.wait(timeout=60) == 0, far.stderr.read()
    finally:
        if far.poll() is None:
            far.kill()
        far.communicate(timeout=30)
        layer.close_sync()
