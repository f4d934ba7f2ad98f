"""The peer process itself: what ``python -m asgi_conformance.peer`` runs.

It moves its own fd 0/1 aside first, so anything the layer prints goes to stderr and cannot
corrupt the reply pipe; then a thread reads request frames into the event loop, the first one
builds the layer, and each later one runs as its own task (a waiting receive must not block
the next command). End of file on stdin (the parent closed it, or died) ends the peer.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import traceback
from typing import IO

from .commands import LayerCommands
from .frames import Request, read_frame
from .replies import ReplyWriter


def main() -> None:
    """Entry point of ``python -m asgi_conformance.peer``."""
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the layer reading stdin gets EOF, not our frames
    os.dup2(2, 1)  # the layer's prints (Python or C level) go to stderr
    os.close(devnull)
    sys.stdout = sys.stderr
    status = 0
    try:
        asyncio.run(_serve(requests, ReplyWriter(replies)))
    except BaseException:  # noqa: BLE001 - shown in the parent's PeerDied message via stderr
        traceback.print_exc()
        status = 1
    finally:
        sys.stderr.flush()
        os._exit(status)  # a layer's leftover non-daemon thread must not keep the peer alive


async def _serve(requests: IO[bytes], replies: ReplyWriter) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Request | None] = asyncio.Queue()
    threading.Thread(target=_read_requests, args=(requests, loop, inbox), daemon=True).start()
    hello = await inbox.get()
    if hello is None:
        return
    try:
        commands = LayerCommands.build(replies, **hello.args)  # built inside the loop, as Channels does
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then we exit
        replies.error(hello.request_id, exc)
        return
    replies.result(hello.request_id, {"pid": os.getpid(), "layer": type(commands.layer).__qualname__})
    await commands.run(inbox)


def _read_requests(stream: IO[bytes], loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Request | None]) -> None:
    try:
        while (request := read_frame(stream, Request)) is not None:
            loop.call_soon_threadsafe(inbox.put_nowait, request)
    except Exception:  # noqa: BLE001 - a broken pipe means the parent is gone: same as EOF
        traceback.print_exc()
    finally:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, None)
        except RuntimeError:  # the loop is already closed
            pass
