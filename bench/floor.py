"""The machine's floors: what Python does here with no layer at all (see also datagram_floor, amqp_floor).

Why: a layer whose send must hear from the server (to raise ChannelFull) and whose receive
must take the message from the server (so capacity and flush stay exact) needs at least one
round trip per send and one per receive: it cannot beat sequential PINGs, nor a bare
RPUSH/LPOP pair run like the pipelined workload. The run prints it beside the
layers' figures, so a ratio against a peer can be read against what the machine allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from bench import amqp_floor, datagram_floor

BODY = b"x" * 60


@contextlib.asynccontextmanager
async def raw_redis(url: str):
    """One bare asyncio connection to Redis: yields ``call(*args)``, the future of a reply."""
    from bench.redis_floor_layer import connect  # hiredis, needed only when Redis is measured

    connection = await connect(url)
    try:
        yield connection.call
    finally:
        connection.transport.close()


async def redis_ping_rate(url: str, n: int) -> float:
    """Sequential PINGs over one bare connection: round trips per second."""
    async with raw_redis(url) as call:
        start = time.perf_counter()
        for _ in range(n):
            await call(b"PING")
        return n / (time.perf_counter() - start)


async def redis_push_pop_rate(url: str, n: int) -> float:
    """The pipelined workload with no layer at all: one task RPUSHes n bodies, one after
    another, while another LPOPs until it has them all, over one connection: messages/s."""
    key = b"bench-floor-%d" % id(asyncio.get_running_loop())

    async def push(call):
        for _ in range(n):
            await call(b"RPUSH", key, BODY)

    async def pop(call):
        got = 0
        while got < n:
            got += await call(b"LPOP", key) is not None

    async with raw_redis(url) as call:
        await call(b"DEL", key)
        start = time.perf_counter()
        await asyncio.gather(push(call), pop(call))
        return n / (time.perf_counter() - start)


async def handoff_rate(members: int = 1000, sends: int = 20) -> float:
    """The waiting fan-out with no layer and no server: ``members`` tasks each wait on a future
    of their own; each send sets them all, and each task waits again: deliveries/s. A layer's
    waiting fan-out in one process cannot beat this (it hands every copy to a waiting task too)."""
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future] = []
    armed = loop.create_future()

    async def member() -> None:
        nonlocal armed
        for _ in range(sends):
            future = loop.create_future()
            waiting.append(future)
            if len(waiting) == members and not armed.done():
                armed.set_result(None)
            await future

    tasks = [asyncio.ensure_future(member()) for _ in range(members)]
    start = time.perf_counter()
    for _ in range(sends):
        await armed
        armed = loop.create_future()
        ready, waiting[:] = list(waiting), []
        for future in ready:
            future.set_result(None)
    await asyncio.gather(*tasks)
    return members * sends / (time.perf_counter() - start)


def measure_floor(addresses: dict, n: int, repeat: int) -> dict:
    """{what: median} for the servers this run started, and for waking another process."""
    floors = {}
    pings = max(20, n // 10)
    latencies = [asyncio.run(datagram_floor.one_way_latency(pings))["p50"] for _ in range(repeat)]
    floors["unix datagram one-way p50 µs, process to process (no layer)"] = round(statistics.median(latencies))
    rates = [asyncio.run(handoff_rate()) for _ in range(repeat)]
    floors["waiting fan-out deliveries/s in one process, 1000 tasks woken by futures (no layer)"] = \
        round(statistics.median(rates))
    urls = addresses.get("redis")
    if urls:
        rates = [asyncio.run(redis_ping_rate(urls[0], n)) for _ in range(repeat)]
        floors["redis PING round trips/s (one asyncio client)"] = round(statistics.median(rates))
        rates = [asyncio.run(redis_push_pop_rate(urls[0], n)) for _ in range(repeat)]
        floors["redis RPUSH/LPOP pipelined msg/s (no layer, one asyncio client)"] = round(statistics.median(rates))
    url = addresses.get("rabbitmq")
    if url:
        for what, measure in (
            ("confirmed publishes/s, sequential", amqp_floor.confirm_rate),
            ("roundtrip msg/s (publish, confirm, take the delivery)", amqp_floor.roundtrip_rate),
            ("roundtrip msg/s with capacity exact (publish, confirm, then open a window of one "
             "for the delivery)", amqp_floor.exact_roundtrip_rate),
            ("pipelined msg/s (each publish confirmed before the next)", amqp_floor.pipelined_rate),
            ("pipelined msg/s with capacity exact (each publish confirmed before the next, taken "
             "through a window of one)", amqp_floor.exact_pipelined_rate),
            ("senders-100 msg/s (100 tasks, each publish confirmed before its next)", amqp_floor.senders_rate),
            ("senders-100 msg/s with capacity exact (100 tasks, each publish confirmed before its next, "
             "taken through a window of one)", amqp_floor.exact_senders_rate),
        ):
            rates = [asyncio.run(measure(url, n)) for _ in range(repeat)]
            floors[f"rabbitmq {what}, pika with no layer"] = round(statistics.median(rates))
        for members, sends in ((100, 5), (1000, 2)):
            rates = [asyncio.run(amqp_floor.fanout_rate(url, members, sends)) for _ in range(repeat)]
            floors[f"rabbitmq fanout-{members} deliveries/s through forwarding queues, pika with no layer"] = \
                round(statistics.median(rates))
        for members, sends in ((100, 100), (1000, 10)):  # the fanout workloads' own sizes
            rates = [asyncio.run(amqp_floor.copy_fanout_rate(url, members, sends)) for _ in range(repeat)]
            floors[f"rabbitmq fanout-{members} deliveries/s with one copy per process (each group send one "
                   "confirmed publish, handed to the waiting members), pika with no layer"] = \
                round(statistics.median(rates))
            rates = [asyncio.run(amqp_floor.exact_copy_fanout_rate(url, members, sends)) for _ in range(repeat)]
            floors[f"rabbitmq fanout-{members} deliveries/s with one copy per process, capacity exact and in "
                   "order (each group send a confirmed publish with a basic.get of the process queue, its copy "
                   "taken from the broker, handed to the waiting members and acked before the next), pika with "
                   "no layer"] = round(statistics.median(rates))
        for members, sends in ((100, 100), (1000, 10)):  # the fanout-late workloads' own sizes
            rates = [asyncio.run(amqp_floor.exact_copy_fanout_rate(url, members, sends, late=True))
                     for _ in range(repeat)]
            floors[f"rabbitmq fanout-{members}-late deliveries/s with one copy per process, capacity exact and "
                   "in order (as above, the members then taking their copies one after another), pika with no "
                   "layer"] = round(statistics.median(rates))
    return floors
