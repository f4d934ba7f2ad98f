"""The floor for cross-process latency: one Unix datagram from one Python process to another.

Why: a waiting receive in another process must be woken by the kernel and its event loop,
whatever the layer. This ping-pong, measured exactly like the xproc-latency workload (the
far side stamps each arrival against the sender's clock), is what that costs here with no
layer at all, so the IPC layer's figure can be read against it.

``python -m bench.datagram_floor echo OWN_PATH PEER_PATH N`` is the far side.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self):
        self.arrivals: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, address) -> None:
        self.arrivals.put_nowait(data)


async def _endpoint(path: str):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return await asyncio.get_running_loop().create_datagram_endpoint(_Inbox, sock=sock)


async def echo(own: str, peer: str, n: int) -> dict:
    """Answer n pings; the one-way trip of each (µs), as percentiles."""
    transport, inbox = await _endpoint(own)
    print("ready", flush=True)
    samples = []
    try:
        for _ in range(n):
            sent_at = int(await inbox.arrivals.get())
            samples.append((time.monotonic_ns() - sent_at) / 1000)
            transport.sendto(b"pong", peer)
    finally:
        transport.close()
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered), "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}


async def one_way_latency(n: int) -> dict:
    """Ping-pong n datagrams with a far-side process: its one-way p50/p99 in µs."""
    with tempfile.TemporaryDirectory() as folder:
        near, far = str(Path(folder) / "near"), str(Path(folder) / "far")
        transport, inbox = await _endpoint(near)
        process = subprocess.Popen([sys.executable, "-m", "bench.datagram_floor", "echo", far, near, str(n)],
                                   stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
        try:
            ready = await asyncio.to_thread(process.stdout.readline)
            if ready.strip() != b"ready":
                raise RuntimeError(f"bench.datagram_floor echo did not start: {ready!r}")
            for _ in range(n):
                transport.sendto(b"%d" % time.monotonic_ns(), far)
                await asyncio.wait_for(inbox.arrivals.get(), 10)
            line = await asyncio.to_thread(process.stdout.readline)
            return json.loads(line)
        finally:
            transport.close()
            if process.poll() is None:
                process.kill()
            process.wait()


if __name__ == "__main__":
    mode, own_path, peer_path, count = sys.argv[1:5]
    assert mode == "echo", "usage: python -m bench.datagram_floor echo OWN_PATH PEER_PATH N"
    print(json.dumps(asyncio.run(echo(own_path, peer_path, int(count)))), flush=True)
