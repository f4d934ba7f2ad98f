"""Cross-process fan-out: one group_send reaching members spread over several receiving processes.

A chat room or a notification is one group_send to members held by a few server processes.
This process sends; ``bench.xmembers`` processes hold the members and report when their last
member has each copy. Sends go one at a time (the next once every process reported the last),
so each one's time from group_send to the last delivery is measured on its own.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time

from bench.workloads import percentiles, release

PROCESSES = 4
START_TIMEOUT = 120  # seconds for a receiving process to make and add its members
SEND_TIMEOUT = 60  # seconds for one group_send to reach every member


async def _start(dotted: str, config: dict, group: str, members: int, sends: int, pattern: str):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.xmembers", dotted, json.dumps(config), group, str(members), str(sends),
        pattern, stdout=asyncio.subprocess.PIPE)


async def _line(process) -> bytes:
    line = await asyncio.wait_for(process.stdout.readline(), SEND_TIMEOUT)
    if not line:
        raise RuntimeError(f"bench.xmembers ended early with {await process.wait()}")
    return line


async def cross_process_fanout(make_layer, contender, config: dict, members: int, sends: int,
                               pattern: str = "waiting") -> dict:
    """deliveries/s over all sends, and the p50/p99 µs from a group_send to its last delivery.

    Each receiving process holds ``members / PROCESSES`` channels, which share that process's
    capacity (CAP-4): it is raised to hold one copy for each, so nothing is dropped. The sender
    is built with it too, as every process of a deployment shares one config: a layer whose
    sender judges a process's room (ipc queues every member's copy itself, and the spec counts
    each copy against ``p!``) would, at the default 100, drop the copies past 100 members a
    process (CAP-5, silently), and this workload would wait for them until it timed out.
    """
    group = f"bench-x{secrets.token_hex(4)}"
    per_process = members // PROCESSES
    room = {"capacity": per_process + 100}
    far_config = {**config, **contender.own_keys(room)}
    processes = [await _start(contender.dotted_path, far_config, group, per_process, sends, pattern)
                 for _ in range(PROCESSES)]
    layer = make_layer(**room)  # make_layer renames it to the layer's own keys
    try:
        for process in processes:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            if line.strip() != b"ready":
                raise RuntimeError(f"bench.xmembers did not start: {line!r}")
        samples, first_sent, last_seen = [], None, 0
        for n in range(sends):
            sent = time.monotonic_ns()
            first_sent = sent if first_sent is None else first_sent
            await layer.group_send(group, {"type": "bench.x", "n": n, "text": "hello, world"})
            reports = [json.loads(await _line(p)) for p in processes]
            if any(r["n"] != n for r in reports):
                raise RuntimeError(f"send {n} answered out of order: {reports}")
            last_seen = max(r["last"] for r in reports)
            samples.append((last_seen - sent) / 1000)
        for process in processes:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        return {"rate": per_process * PROCESSES * sends / ((last_seen - first_sent) / 1e9), **percentiles(samples)}
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await release(layer)
