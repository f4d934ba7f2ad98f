"""FLUSH-1: flush empties every channel and group, and receives blocked during it stay live.

Django Channels' test tools flush between tests; a flush that strands a waiting consumer
or leaves memberships behind makes the next test hang or see stray messages.
"""

from __future__ import annotations

import asyncio

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    cancel_all,
    expect_message,
    expect_silence,
    fresh_channel,
    fresh_group,
    now_waiting,
    offers,
    results_of,
    start_receives,
    still_waiting,
)


def _message(text: str) -> Message:
    return {"type": "test.flush", "text": text}


@requirement("FLUSH-1", needs=["flush"])
async def test_flush_empties_every_channel(layer: Layer, asgi_target: LayerTarget) -> None:
    # Every kind of channel the layer keeps messages on: normal ones only where they have a backlog.
    normal = [fresh_channel()] if offers(asgi_target, "normal-channels", "backlog") else []
    channels = [await layer.new_channel(), await layer.new_channel()] + normal
    for channel in channels:
        await layer.send(channel, _message("before flush"))
        await layer.send(channel, _message("also before flush"))
    await layer.flush()
    await asyncio.gather(*(expect_silence(layer, channel) for channel in channels))
    await layer.send(channels[0], _message("after flush"))
    assert await expect_message(layer, channels[0]) == _message("after flush")


@requirement("FLUSH-1", needs=["flush", "groups"])
async def test_after_flush_group_send_reaches_no_former_member(layer: Layer) -> None:
    groups = [fresh_group(), fresh_group()]
    member = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, member)
    await layer.flush()
    for group in groups:
        await layer.group_send(group, _message("to a flushed group"))
    await expect_silence(layer, member)


@requirement("FLUSH-1", needs=["flush"])
async def test_a_receive_blocked_during_flush_gets_later_messages(layer: Layer) -> None:
    channel = await layer.new_channel()
    blocked = start_receives(layer, channel, 1)
    try:
        await now_waiting(*blocked)
        await layer.flush()
        await still_waiting(*blocked)  # flush must leave it waiting, not end it
        await layer.send(channel, _message("after flush"))
        assert await results_of(blocked, "receives blocked during a flush") == [
            _message("after flush")]
    finally:
        await cancel_all(blocked)
