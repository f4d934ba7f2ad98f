"""The machine's floor: how many request/reply round trips one asyncio client can make.

Why: a layer whose send must hear from the server (to raise ChannelFull) and whose receive
must take the message from the server (so capacity and flush stay exact) cannot deliver
more messages per second, one after another, than this. The run prints it beside the
layers' figures, so a ratio against a peer can be read against what the machine allows.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from urllib.parse import urlsplit

PING = b"*1\r\n$4\r\nPING\r\n"


async def redis_ping_rate(url: str, n: int) -> float:
    """Sequential PINGs over one raw asyncio connection: round trips per second."""
    address = urlsplit(url)
    loop = asyncio.get_running_loop()

    class Replies(asyncio.Protocol):
        waiting: asyncio.Future | None = None

        def data_received(self, data: bytes) -> None:
            if self.waiting is not None and not self.waiting.done():
                self.waiting.set_result(data)

    transport, replies = await loop.create_connection(Replies, address.hostname, address.port)
    try:
        start = time.perf_counter()
        for _ in range(n):
            replies.waiting = loop.create_future()
            transport.write(PING)
            await replies.waiting
        return n / (time.perf_counter() - start)
    finally:
        transport.close()


def measure_floor(addresses: dict, n: int, repeat: int) -> dict:
    """{'redis PING round trips/s (one asyncio client)': median} for the servers this run started."""
    floors = {}
    urls = addresses.get("redis")
    if urls:
        rates = [asyncio.run(redis_ping_rate(urls[0], n)) for _ in range(repeat)]
        floors["redis PING round trips/s (one asyncio client)"] = round(statistics.median(rates))
    return floors
