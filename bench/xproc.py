"""The far side of the cross-process workloads: a separate Python process on the same layer.

``python -m bench.xproc sink|echo DOTTED CONFIG_JSON CHANNEL N [REPLY_CHANNEL]`` prints "ready",
does its part, then prints its figures as one JSON line. Send times travel inside the
messages as ``time.monotonic_ns()``, which is one clock for every process on a Linux machine.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time

from bench.workloads import percentiles, release, send_with_backoff


def build(dotted: str, config: dict):
    module_name, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)(**config)


async def sink(layer, channel: str, n: int) -> dict:
    """Receive n messages: messages/s from the first send to the last receive, and latencies."""
    print("ready", flush=True)
    samples = []
    first_sent = None
    for _ in range(n):
        message = await layer.receive(channel)
        now = time.monotonic_ns()
        first_sent = message["t"] if first_sent is None else first_sent
        samples.append((now - message["t"]) / 1000)
    elapsed = (time.monotonic_ns() - first_sent) / 1e9
    return {"rate": n / elapsed, **percentiles(samples)}


async def echo(layer, channel: str, n: int, reply: str) -> dict:
    """Answer n pings one at a time: one-way latencies of an idle layer across processes."""
    print("ready", flush=True)
    samples = []
    for _ in range(n):
        message = await layer.receive(channel)
        samples.append((time.monotonic_ns() - message["t"]) / 1000)
        await send_with_backoff(layer, reply, {"type": "bench.pong"})
    return percentiles(samples)


async def main(argv: list[str]) -> None:
    mode, dotted, config, channel, n = argv[:5]
    layer = build(dotted, json.loads(config))
    try:
        if mode == "sink":
            figures = await sink(layer, channel, int(n))
        else:
            figures = await echo(layer, channel, int(n), argv[5])
    finally:
        await release(layer, flush=False)  # the near side flushes once it has every reply
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
