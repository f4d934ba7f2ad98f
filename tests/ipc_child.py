"""A separate process (started, not forked) that uses the IPC layer and then stops where told.

    python tests/ipc_child.py PREFIX ACTION CHANNEL

ACTION: hold-lock (takes the segment lock through the layer's own locking and waits),
send / receive / group_send / flush (the test sets ASGI_IPC_TEST_PAUSE_AT so the layer stops inside that
operation's commit), wait (blocks in receive on CHANNEL). The line "ASGI_IPC_PAUSED ..." on
stdout tells the test it is in place; the test then SIGKILLs it.
"""

import asyncio
import sys
import time

from reference_layers.ipc import IPCChannelLayer


async def main(prefix: str, action: str, channel: str) -> None:
    layer = IPCChannelLayer(prefix=prefix)
    if action == "hold-lock":
        with layer._current().segment.locked():
            print("ASGI_IPC_PAUSED hold-lock", flush=True)
            time.sleep(3600)
    elif action == "send":
        await layer.send(channel, {"type": "child.message", "from": "child"})
    elif action == "receive":
        await layer.receive(channel)
    elif action == "group_send":
        await layer.group_send(channel, {"type": "test.group"})
    elif action == "flush":
        await layer.flush()
    elif action == "wait":
        task = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)  # let the receive register before saying so
        while not layer._wakers:
            await asyncio.sleep(0.01)
        print("ASGI_IPC_PAUSED wait", flush=True)
        await task
    print("ASGI_IPC_FINISHED", flush=True)  # the test fails if the pause point was never reached


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
