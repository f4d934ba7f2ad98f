"""The workloads, each an async function of a layer factory returning its figures.

All of them go through the public channel layer API only, so every layer, ours or a peer's,
does exactly the same work.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import statistics
import time

MESSAGE = {"type": "bench.message", "text": "hello, world", "n": 0}


async def release(layer, flush: bool = True) -> None:
    """Flush and close whatever the layer offers, so the next repetition starts clean.

    Only the side that finishes last may flush: flush empties the whole layer, so a far side
    flushing as it leaves would erase a reply its peer has not received yet.
    """
    if flush and "flush" in (getattr(layer, "extensions", None) or []):
        await layer.flush()
    for name in ("close", "close_pools"):
        method = getattr(layer, name, None)
        if method is not None:
            result = method()
            if inspect.isawaitable(result):
                await result
            return


async def send_with_backoff(layer, channel: str, message: dict) -> None:
    """Send, waiting briefly while the channel is full (capacity is part of the workload)."""
    while True:
        try:
            await layer.send(channel, message)
            return
        except Exception as exc:
            if type(exc).__name__ != "ChannelFull":
                raise
            await asyncio.sleep(0.0005)


async def roundtrips(make_layer, n: int) -> dict:
    """Sequential send -> receive on one process-specific channel: messages/s."""
    layer = make_layer()
    try:
        channel = await layer.new_channel()
        await layer.send(channel, MESSAGE)  # warm connections up
        await layer.receive(channel)
        start = time.perf_counter()
        for i in range(n):
            await layer.send(channel, {**MESSAGE, "n": i})
            await layer.receive(channel)
        return {"rate": n / (time.perf_counter() - start)}
    finally:
        await release(layer)


async def pipelined(make_layer, n: int) -> dict:
    """One task sends n while another receives them: messages/s."""
    layer = make_layer()
    try:
        channel = await layer.new_channel()
        await layer.send(channel, MESSAGE)
        await layer.receive(channel)

        async def sender():
            for i in range(n):
                await send_with_backoff(layer, channel, {**MESSAGE, "n": i})

        async def receiver():
            for _ in range(n):
                await layer.receive(channel)

        start = time.perf_counter()
        await asyncio.gather(sender(), receiver())
        return {"rate": n / (time.perf_counter() - start)}
    finally:
        await release(layer)


async def fanout(make_layer, members: int, sends: int = 3) -> dict:
    """group_send to ``members`` channels, each member receiving every copy: deliveries/s.

    All members are one process's channels, which share one capacity (CAP-4), so the
    capacity is raised to hold every copy: the workload measures delivery, not dropping.
    """
    layer = make_layer(capacity=members * sends + 100)
    try:
        group = f"bench-{secrets.token_hex(4)}"
        channels = [await layer.new_channel() for _ in range(members)]
        for channel in channels:
            await layer.group_add(group, channel)

        async def member(channel):
            for _ in range(sends):
                await layer.receive(channel)

        start = time.perf_counter()
        receivers = [asyncio.ensure_future(member(c)) for c in channels]
        for i in range(sends):
            await layer.group_send(group, {**MESSAGE, "n": i})
        await asyncio.gather(*receivers)
        return {"rate": members * sends / (time.perf_counter() - start)}
    finally:
        await release(layer)


async def fanout_late(make_layer, members: int, sends: int = 3) -> dict:
    """group_send, then the members call receive() one after another: deliveries/s.

    The pattern of consumers that were busy with the previous message: no receive is waiting
    when the copies come, so each one is read on its own.
    """
    layer = make_layer(capacity=members + 100)
    try:
        group = f"bench-{secrets.token_hex(4)}"
        channels = [await layer.new_channel() for _ in range(members)]
        for channel in channels:
            await layer.group_add(group, channel)
        start = time.perf_counter()
        for i in range(sends):
            await layer.group_send(group, {**MESSAGE, "n": i})
            for channel in channels:
                await layer.receive(channel)
        return {"rate": members * sends / (time.perf_counter() - start)}
    finally:
        await release(layer)


async def senders(make_layer, n: int, tasks: int = 100) -> dict:
    """``tasks`` concurrent sending tasks in one process, one task receiving: messages/s.

    Timed until the last message is received, so a layer cannot count sends it only buffered;
    the channel's capacity holds all of them, so this measures sending, not ChannelFull.
    """
    per_task = max(1, n // tasks)
    layer = make_layer(capacity=per_task * tasks + 100)
    try:
        channel = await layer.new_channel()
        await layer.send(channel, MESSAGE)
        await layer.receive(channel)

        async def sender(k):
            for i in range(per_task):
                await send_with_backoff(layer, channel, {**MESSAGE, "n": i, "k": k})

        async def receiver():
            for _ in range(per_task * tasks):
                await layer.receive(channel)

        start = time.perf_counter()
        await asyncio.gather(receiver(), *(sender(k) for k in range(tasks)))
        return {"rate": per_task * tasks / (time.perf_counter() - start)}
    finally:
        await release(layer)


async def latency(make_layer, n: int) -> dict:
    """One send -> receive on an idle layer, the receive already waiting: p50 and p99 in µs."""
    layer = make_layer()
    try:
        channel = await layer.new_channel()
        await layer.send(channel, MESSAGE)
        await layer.receive(channel)
        samples = []
        for i in range(n):
            waiting = asyncio.ensure_future(layer.receive(channel))
            await asyncio.sleep(0.001)  # let the receive start waiting: this is the idle case
            start = time.perf_counter()
            await layer.send(channel, {**MESSAGE, "n": i})
            await waiting
            samples.append((time.perf_counter() - start) * 1e6)
        return percentiles(samples)
    finally:
        await release(layer)


async def sharded(make_layer, n: int, pairs: int = 8) -> dict:
    """Several sender/receiver pairs on distinct normal channels (spread over shards): messages/s."""
    layer = make_layer()
    try:
        channels = [f"bench.shard-{secrets.token_hex(4)}-{i}" for i in range(pairs)]
        per_pair = max(1, n // pairs)

        async def pair(channel):
            async def sender():
                for i in range(per_pair):
                    await send_with_backoff(layer, channel, {**MESSAGE, "n": i})

            async def receiver():
                for _ in range(per_pair):
                    await layer.receive(channel)

            await asyncio.gather(sender(), receiver())

        start = time.perf_counter()
        await asyncio.gather(*(pair(c) for c in channels))
        return {"rate": per_pair * pairs / (time.perf_counter() - start)}
    finally:
        await release(layer)


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


async def _start_far_side(mode: str, dotted: str, config: dict, channel: str, n: int, *extra: str):
    import json
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.xproc", mode, dotted, json.dumps(config), channel, str(n), *extra,
        stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        process.kill()
        raise RuntimeError(f"bench.xproc {mode} did not start: {line!r}")
    return process


async def _far_side_figures(process) -> dict:
    import json

    line = await asyncio.wait_for(process.stdout.readline(), 120)
    await process.wait()
    return json.loads(line)


async def cross_process(make_layer, dotted: str, config: dict, n: int) -> dict:
    """This process sends n on a normal channel, another receives: messages/s and latencies."""
    channel = f"bench.xp-{secrets.token_hex(4)}"
    process = await _start_far_side("sink", dotted, config, channel, n)
    layer = make_layer()
    try:
        for i in range(n):
            await send_with_backoff(layer, channel, {"type": "bench.x", "n": i, "t": time.monotonic_ns()})
        return await _far_side_figures(process)
    finally:
        if process.returncode is None:
            process.kill()
        await release(layer)


async def cross_process_latency(make_layer, dotted: str, config: dict, n: int) -> dict:
    """Ping-pong between two processes; the far side measures each one-way trip (µs)."""
    channel = f"bench.ping-{secrets.token_hex(4)}"
    reply = f"bench.pong-{secrets.token_hex(4)}"
    process = await _start_far_side("echo", dotted, config, channel, n, reply)
    layer = make_layer()
    try:
        for i in range(n):
            await layer.send(channel, {"type": "bench.ping", "n": i, "t": time.monotonic_ns()})
            await layer.receive(reply)
        return await _far_side_figures(process)
    finally:
        if process.returncode is None:
            process.kill()
        await release(layer)
