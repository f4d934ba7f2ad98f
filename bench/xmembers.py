"""The far side of cross-process fan-out: one receiving process holding some of a group's members.

``python -m bench.xmembers DOTTED CONFIG_JSON GROUP MEMBERS SENDS waiting|late`` makes MEMBERS
channels with ``new_channel()``, adds them to GROUP, prints "ready", then for each of the
SENDS group_sends prints ``{"n": n, "last": ns}`` once every member here has that copy
(``last``: ``time.monotonic_ns()`` of the last delivery, one clock for every process).

``waiting``: every member is already waiting in receive() when the copy comes, and waits
again as soon as it has it. ``late``: the members call receive() one after another, each
once the one before has its copy (a consumer busy with the previous message).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.workloads import release
from bench.xproc import build


def report(n: int) -> None:
    print(json.dumps({"n": n, "last": time.monotonic_ns()}), flush=True)


async def waiting(layer, channels: list[str], sends: int) -> None:
    remaining = [len(channels)] * sends

    async def member(channel: str) -> None:
        for _ in range(sends):
            n = (await layer.receive(channel))["n"]
            remaining[n] -= 1
            if not remaining[n]:
                report(n)

    await asyncio.gather(*(member(c) for c in channels))


async def late(layer, channels: list[str], sends: int) -> None:
    for _ in range(sends):
        for channel in channels:
            n = (await layer.receive(channel))["n"]
        report(n)


async def main(argv: list[str]) -> None:
    dotted, config, group, members, sends, pattern = argv
    layer = build(dotted, json.loads(config))
    try:
        channels = [await layer.new_channel() for _ in range(int(members))]
        for channel in channels:
            await layer.group_add(group, channel)
        print("ready", flush=True)
        await (waiting if pattern == "waiting" else late)(layer, channels, int(sends))
    finally:
        await release(layer, flush=False)  # the sending side flushes once every process is done


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
