"""FAULT-4 and FAULT-5: numbered traffic through a fault that keeps the server's state (a 3 s
pause, connections dropped by the server). Every message that was sent must arrive, once and in
order per channel; a failure names the numbers lost, doubled or out of order.

Runs under the same conditions as ``test_faults`` (``--asgi-server`` and ``--asgi-faults``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from asgi_conformance.faults import (
    FAULT_TAG,
    PAUSE_SECONDS,
    RETRY_PAUSE,
    TRAFFIC_AFTER_FAULT,
    TRAFFIC_BEFORE_FAULT,
    TRAFFIC_PACE,
    Delivery,
    ServerUnderTest,
    error_text,
    no_more_than_recorded,
    room_for_traffic,
    stop_receiving,
    until_all_arrived,
    within_fault_timeout,
)
from asgi_conformance.runner import LayerPool, requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    any_channel,
    numbered_message,
)

# --- FAULT-4, FAULT-5: traffic through a fault ------------------------------------------------

async def _traffic_through(layer: Layer, channel: str, fault: Callable[[], Awaitable[Any]], name: str,
                           errors_after: bool) -> tuple[Delivery, list[str], list[str]]:
    """Numbered sends and receives on ``channel`` while ``fault()`` strikes mid-traffic.

    Returns what was delivered, the errors calls raised while the fault lasted, and those they
    raised after it was over (``errors_after``: also before it; a transparent recovery has none).
    """
    delivery = Delivery(sender="this process")
    during: list[str] = []
    after: list[str] = []
    striking = asyncio.Event()
    over = asyncio.Event()
    arrived = asyncio.Event()
    stopping = asyncio.Event()

    def note(error: Exception, what: str) -> None:
        (after if over.is_set() or errors_after else during).append(f"{what}: {error_text(error)}")

    async def send_all() -> None:
        sent_after = 0
        for number in itertools.count():
            phase = f"after the {name}" if over.is_set() else f"during the {name}"
            try:
                await within_fault_timeout(layer.send(channel, numbered_message(number, FAULT_TAG)),
                                           f"send() of message {number}", phase)
                delivery.returned.append(number)
            except AssertionError:
                raise
            except Exception as exc:  # noqa: BLE001
                delivery.raised[number] = error_text(exc)
                note(exc, f"send() of message {number}")
            if number + 1 == TRAFFIC_BEFORE_FAULT:
                striking.set()
            if over.is_set():
                sent_after += 1
                if sent_after >= TRAFFIC_AFTER_FAULT:
                    return
            await asyncio.sleep(TRAFFIC_PACE)

    async def receive_all() -> None:
        while not stopping.is_set():
            try:
                message = await layer.receive(channel)
            except Exception as exc:  # noqa: BLE001
                note(exc, "receive()")
                await asyncio.sleep(RETRY_PAUSE)
                continue
            delivery.received.append(message["index"])
            arrived.set()

    async def strike() -> None:
        await striking.wait()
        await fault()
        over.set()

    receiving = asyncio.ensure_future(receive_all())
    try:
        await asyncio.gather(send_all(), strike())
        await until_all_arrived(delivery, delivery.returned, arrived, name)
    finally:
        await stop_receiving(receiving, stopping)
    await no_more_than_recorded(layer, channel, lambda message: delivery.received.append(message["index"]))
    return delivery, during, after


@requirement("FAULT-4")
async def test_a_server_paused_mid_traffic_loses_doubles_and_reorders_nothing(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    asgi_server.require("pause")
    layer = layers.make(**room_for_traffic(asgi_target))
    channel = await any_channel(layer, asgi_target, "fault4")
    delivery, _, after = await _traffic_through(
        layer, channel, lambda: asgi_server.pause(PAUSE_SECONDS), f"{PAUSE_SECONDS:g} s pause", errors_after=False)
    problems = delivery.problems()
    if after:
        problems.append(f"calls still failed after the server resumed: {after[:3]}")
    assert not problems, "; ".join(problems)


@requirement("FAULT-5")
async def test_connections_dropped_by_the_server_are_recovered_transparently(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    asgi_server.require("drop_connections")
    layer = layers.make(**room_for_traffic(asgi_target))
    channel = await any_channel(layer, asgi_target, "fault5")
    delivery, _, errors = await _traffic_through(
        layer, channel, asgi_server.drop_connections, "dropped connections", errors_after=True)
    problems = delivery.problems()
    if errors:
        problems.append(f"{len(errors)} call(s) raised instead of recovering transparently: {errors[:3]}")
    assert not problems, "; ".join(problems)
