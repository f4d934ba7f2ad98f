"""A separate process (started, not forked) that uses the IPC layer and then stops where told.

    python tests/ipc_child.py PREFIX ACTION CHANNEL [REPLY_CHANNEL ROUNDS]

ACTION: hold-lock (takes the segment lock through the layer's own locking and waits),
send / receive / group_send / flush (the test sets ASGI_IPC_TEST_PAUSE_AT so the layer stops inside that
operation's commit), wait (blocks in receive on CHANNEL). The line "ASGI_IPC_PAUSED ..." on
stdout tells the test it is in place; the test then SIGKILLs it.

Two actions run to the end instead (for the cross-process traffic tests): echo (answers
ROUNDS messages from CHANNEL on REPLY_CHANNEL, one at a time) and sink (receives ROUNDS
messages from CHANNEL and prints their "n" values as one JSON line). Both say "ready"
first and only close the layer at the end (never flush: that would erase what the other
side has not received yet).
"""

import asyncio
import json
import sys
import time

from reference_layers.ipc import IPCChannelLayer


async def receive(layer: IPCChannelLayer, channel: str) -> dict:
    """A receive without the public check that refuses another object's 'p!x' names: the crash
    tests hand a process-specific channel from this child to the survivor on purpose."""
    return layer.codec.decode(await layer._receive(channel))


async def main(prefix: str, action: str, channel: str, reply: str = "", rounds: str = "0") -> None:
    layer = IPCChannelLayer(prefix=prefix)
    if action in ("echo", "sink"):
        print("ready", flush=True)
        seen = []
        for _ in range(int(rounds)):
            message = await receive(layer, channel)
            seen.append(message["n"])
            if action == "echo":
                await layer.send(reply, {"type": "test.pong", "n": message["n"]})
        await layer.close()
        print(json.dumps(seen), flush=True)
        return
    if action == "hold-lock":
        with layer._current().segment.locked():
            print("ASGI_IPC_PAUSED hold-lock", flush=True)
            time.sleep(3600)
    elif action == "send":
        await layer.send(channel, {"type": "child.message", "from": "child"})
    elif action == "receive":
        await receive(layer, channel)
    elif action == "group_send":
        await layer.group_send(channel, {"type": "test.group"})
    elif action == "flush":
        await layer.flush()
    elif action == "wait":
        task = asyncio.ensure_future(receive(layer, channel))
        await asyncio.sleep(0)  # let the receive register before saying so
        while not layer._wakers:
            await asyncio.sleep(0.01)
        print("ASGI_IPC_PAUSED wait", flush=True)
        await task
    print("ASGI_IPC_FINISHED", flush=True)  # the test fails if the pause point was never reached


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
