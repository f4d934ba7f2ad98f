"""The benchmark tool works end to end (--quick): every layer, every workload, every output.

It checks that the tool runs and writes its results, never a speed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.layers import BY_NAME, CONTENDERS
from bench.plan import SCENARIOS, applies

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_a_quick_run_measures_every_layer_in_every_workload(tmp_path, redis_shard_urls, rabbitmq_url):
    env = {**os.environ, "ASGI_TEST_REDIS_URLS": ",".join(redis_shard_urls), "ASGI_TEST_RABBITMQ_URL": rabbitmq_url}
    out, chart, markdown = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "r.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", f"--out={out}", f"--chart={chart}",
                           f"--markdown={markdown}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads(out.read_text())
    rows = results["rows"]
    assert not [r for r in rows if r["error"]], [r for r in rows if r["error"]]
    measured = {(r["scenario"], r["contender"]) for r in rows if r["samples"]}
    for contender in CONTENDERS:  # channels-nats too: the anchor must run, not be skipped
        for scenario in SCENARIOS:
            if applies(scenario, contender):
                assert (scenario.name, contender.name) in measured
    new = ("xfanout-1000", "xfanout-1000-late", "senders-100", "fanout-100-late", "fanout-1000-late")
    assert all((name, "redis") in measured for name in new), measured
    assert ("xfanout-1000", "channels-inmemory") not in measured  # one process cannot hold them
    xfanout = {r["figure"]: r for r in rows if r["scenario"] == "xfanout-1000" and r["contender"] == "rabbitmq"}
    assert set(xfanout) == {"rate", "p50", "p99"} and xfanout["p50"]["median"] <= xfanout["p99"]["median"]
    assert "channels-nats" in xfanout["rate"]["ratios"] and "channels_rabbitmq" in xfanout["rate"]["ratios"]
    assert {f"sharded-{n}" for n in (1, 2, 3)} <= {r["scenario"] for r in rows if r["contender"] == "redis"}
    ours = next(r for r in rows if r["contender"] == "redis" and r["scenario"] == "roundtrip")
    assert "channels_redis" in ours["ratios"]
    assert results["meta"]["cores"] == os.cpu_count() and results["meta"]["versions"]
    floors = results["meta"]["floors"]
    # confirm, then two each (loose and with capacity exact, or 100 and 1000 members): roundtrips,
    # pipelined, senders-100, fan-outs through forwarding queues, fan-outs with one copy per
    # process (loose, and with capacity exact and in order), and the late fan-outs' one copy per
    # process with capacity exact
    assert sum("rabbitmq" in what for what in floors) == 15, floors
    assert len(floors) == 19 and all(value > 0 and f"{what}: {value:,}" in markdown.read_text()
                                    for what, value in floors.items()), floors
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "| roundtrip | redis |" in markdown.read_text()
    assert "ratio" in done.stdout


def test_workloads_picks_a_subset_and_refuses_an_unknown_name(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "bench", "--workloads", "latency,no-such"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown workload(s) 'no-such'" in bad.stderr and "xfanout-1000" in bad.stderr
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "inmemory", "--workloads",
                           "latency,fanout-100-late", f"--out={out}", "--chart=", f"--markdown={tmp_path / 'r.md'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["scenario"], r["contender"]) for r in rows} == {
        (s, c) for s in ("latency", "fanout-100-late") for c in ("inmemory", "channels-inmemory")}


def test_channels_redis_gets_a_pool_for_100_senders():
    hosts = BY_NAME["channels_redis"].config({"redis": ["redis://127.0.0.1:1"]})["hosts"]
    assert hosts == [{"address": "redis://127.0.0.1:1", "max_connections": 1000}]


def test_repetitions_take_turns_and_a_broken_layer_stays_an_error_row():
    from bench.__main__ import Job, run_interleaved
    from bench.plan import Scenario

    order = []

    def recording(name, fails=False):
        async def run(make_layer, contender, config, size):
            order.append(name)
            if fails:
                raise RuntimeError("layer broke")
            return {"rate": float(len(order))}
        return Scenario(name, run, full=1, quick=1)

    class Quiet:
        def step(self, text):
            pass

    inmemory = BY_NAME["inmemory"]
    jobs = [Job(recording("a"), inmemory, {}, 1, "a"), Job(recording("b", fails=True), inmemory, {}, 1, "b"),
            Job(recording("c"), inmemory, {}, 1, "c")]
    rows = run_interleaved(jobs, 2, Quiet())
    assert order == ["a", "b", "c", "a", "c"]  # turns; the broken one is not run again
    assert [(r.scenario, r.samples, r.error) for r in rows] == [
        ("a", [1.0, 4.0], None), ("b", [], "RuntimeError: layer broke"), ("c", [3.0, 5.0], None)]
