"""What a peer can be told to do with its layer: each ``cmd_*`` method is one command.

The commands are the public channel layer API, plus ``send_many`` (numbered messages, so
the test can check order) and ``traffic`` (endless sends and receives, so a test can kill a
peer in the middle of real work).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import os
import sys
import traceback
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any

from .frames import Request
from .replies import ReplyWriter

Message = dict[str, Any]
TRAFFIC_RECEIVE_WAIT = 0.2  # seconds: a traffic round counts a miss rather than wait it out


@dataclass
class TrafficStatus:
    """How far the background traffic got; ``error`` is set when it stopped on one."""

    iterations: int = 0
    missed: int = 0
    error: str | None = None


class LayerCommands:
    """Runs the commands of one peer on its layer, each as its own task."""

    def __init__(self, replies: ReplyWriter, peer_id: str, layer: Any):
        self.replies = replies
        self.peer_id = peer_id
        self.layer = layer
        self.tasks: set[asyncio.Task[None]] = set()
        self.traffic = TrafficStatus()

    @classmethod
    def build(cls, replies: ReplyWriter, *, dotted_path: str, config: dict[str, Any], peer_id: str,
              sys_path: list[str]) -> LayerCommands:
        """The layer ``dotted_path(**config)``, imported with the test process's ``sys_path``."""
        sys.path[:0] = [entry for entry in sys_path if entry not in sys.path]
        module_name, _, attribute = dotted_path.rpartition(".")
        factory = getattr(importlib.import_module(module_name), attribute)
        return cls(replies, peer_id, factory(**config))

    async def run(self, inbox: asyncio.Queue[Request | None]) -> None:
        while (request := await inbox.get()) is not None:
            self._keep(asyncio.create_task(self.handle(request)))
        for task in list(self.tasks):  # the parent closed the pipe: stop work, close the layer
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.close_layer()

    def _keep(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handle(self, request: Request) -> None:
        method = getattr(self, "cmd_" + request.command, None)
        try:
            if method is None:
                raise ValueError(f"unknown peer command {request.command!r}")
            result = await method(**request.args)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the test
            self.replies.error(request.request_id, exc)
        else:
            self.replies.result(request.request_id, result)

    async def close_layer(self) -> None:
        """Release connections; never flush: the server state belongs to the test."""
        for name in ("close", "close_pools"):
            method = getattr(self.layer, name, None)
            if method is not None:
                try:
                    result = method()
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, 2)
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
                return

    # --- the layer API ---------------------------------------------------------------------
    async def cmd_ping(self) -> int:
        return os.getpid()

    async def cmd_new_channel(self, prefix: str | None = None) -> str:
        channel: str = await (self.layer.new_channel() if prefix is None else self.layer.new_channel(prefix))
        return channel

    async def cmd_send(self, channel: str, message: Message) -> None:
        await self.layer.send(channel, message)

    async def cmd_receive(self, channel: str, timeout: float | None = None) -> Message | None:
        try:
            message: Message = await asyncio.wait_for(self.layer.receive(channel), timeout)
        except asyncio.TimeoutError:
            return None
        return message

    async def cmd_group_add(self, group: str, channel: str) -> None:
        await self.layer.group_add(group, channel)

    async def cmd_group_discard(self, group: str, channel: str) -> None:
        await self.layer.group_discard(group, channel)

    async def cmd_group_send(self, group: str, message: Message) -> None:
        await self.layer.group_send(group, message)

    async def cmd_flush(self) -> None:
        await self.layer.flush()

    # --- beyond the API ----------------------------------------------------------------------
    async def cmd_send_many(self, channel: str, count: int, type: str = "xp.seq") -> int:  # noqa: A002 - the frame field is named type
        for seq in range(count):
            await self.layer.send(channel, {"type": type, "sender": self.peer_id, "seq": seq})
        return count

    async def cmd_traffic(self, channel: str | None = None, group: str | None = None, warmup: int = 10) -> Message:
        """Start sending and receiving in a loop that runs until the peer dies; answer after
        ``warmup`` rounds, so the caller knows the peer is in the middle of traffic."""
        own: str = await self.layer.new_channel()
        if group is not None:
            await self.layer.group_add(group, own)
        warmed: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._keep(asyncio.create_task(self._traffic(channel or own, own, group, warmup, warmed)))
        return await warmed

    async def _traffic(self, channel: str, own: str, group: str | None, warmup: int,
                       warmed: asyncio.Future[Message]) -> None:
        # Receives wait briefly: a miss is counted, not waited out, so the loop keeps moving
        # (delivery itself is what the other requirements check).
        try:
            for seq in itertools.count():
                message = {"type": "xp.traffic", "sender": self.peer_id, "seq": seq}
                await _tolerating_full(self.layer.send(channel, message))
                receives = [channel]
                if group is not None:
                    await self.layer.group_send(group, message)
                    receives.append(own)
                for source in receives:
                    if await self.cmd_receive(source, timeout=TRAFFIC_RECEIVE_WAIT) is None:
                        self.traffic.missed += 1
                self.traffic.iterations = seq + 1
                if seq + 1 == warmup:
                    warmed.set_result({**asdict(self.traffic), "channel": own})
        except Exception as exc:  # noqa: BLE001
            self.traffic.error = f"{type(exc).__name__}: {exc}"
            if not warmed.done():
                warmed.set_exception(exc)

    async def cmd_traffic_status(self) -> dict[str, Any]:
        return asdict(self.traffic)


async def _tolerating_full(operation: Awaitable[None]) -> None:
    """A full channel is part of heavy traffic, not a failure (known by name: we import no layer)."""
    try:
        await operation
    except Exception as exc:
        if not any(kind.__name__ == "ChannelFull" for kind in type(exc).__mro__):
            raise
