"""FLUSH-1: flush empties every channel and group, and receives blocked during it stay live.

Django Channels' test tools flush between tests; a flush that strands a waiting consumer
or leaves memberships behind makes the next test hang or see stray messages.
"""

import asyncio

from asgi_conformance.spec import (
    SETTINGS,
    expect_message,
    expect_silence,
    fresh_channel,
    fresh_group,
    offers,
    requirement,
)


def _message(text: str) -> dict:
    return {"type": "test.flush", "text": text}


@requirement("FLUSH-1", needs=["flush"])
async def test_flush_empties_every_channel(layer, asgi_target):
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
async def test_after_flush_group_send_reaches_no_former_member(layer):
    groups = [fresh_group(), fresh_group()]
    member = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, member)
    await layer.flush()
    for group in groups:
        await layer.group_send(group, _message("to a flushed group"))
    await expect_silence(layer, member)


@requirement("FLUSH-1", needs=["flush"])
async def test_a_receive_blocked_during_flush_gets_later_messages(layer):
    channel = await layer.new_channel()
    blocked = asyncio.ensure_future(layer.receive(channel))
    try:
        done, _ = await asyncio.wait({blocked}, timeout=SETTINGS.quiet_period / 5)
        assert not done, f"receive ended before anything was sent: {blocked!r}"
        await layer.flush()
        done, _ = await asyncio.wait({blocked}, timeout=SETTINGS.quiet_period)
        assert not done, f"flush ended the waiting receive instead of leaving it waiting: {blocked!r}"
        await layer.send(channel, _message("after flush"))
        done, _ = await asyncio.wait({blocked}, timeout=SETTINGS.delivery_timeout)
        assert done, (f"a receive blocked during flush got nothing within {SETTINGS.delivery_timeout:g} s "
                      "of a later send: flush stranded it")
        assert blocked.result() == _message("after flush")
    finally:
        blocked.cancel()
        await asyncio.gather(blocked, return_exceptions=True)
