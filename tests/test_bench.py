"""The benchmark tool works end to end (--quick): every layer, every workload, every output.

It checks that the tool runs and writes its results, never a speed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.layers import CONTENDERS
from bench.plan import SCENARIOS

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
    for contender in CONTENDERS:
        for scenario in SCENARIOS:
            if scenario.cross_process and not contender.cross_process:
                continue
            assert (scenario.name, contender.name) in measured
    assert {f"sharded-{n}" for n in (1, 2, 3)} <= {r["scenario"] for r in rows if r["contender"] == "redis"}
    ours = next(r for r in rows if r["contender"] == "redis" and r["scenario"] == "roundtrip")
    assert "channels_redis" in ours["ratios"]
    assert results["meta"]["cores"] == os.cpu_count() and results["meta"]["versions"]
    floors = results["meta"]["floors"]
    assert sum("rabbitmq" in what for what in floors) == 5, floors  # confirm, roundtrip, pipelined, 2 fan-outs
    assert len(floors) == 8 and all(value > 0 and f"{what}: {value:,}" in markdown.read_text()
                                    for what, value in floors.items()), floors
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "| roundtrip | redis |" in markdown.read_text()
    assert "ratio" in done.stdout
