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
    requirement,
)


def _message(text: str) -> dict:
    return {"type": "test.flush", "text": text}


@requirement("FLUSH-1", needs=["flush", "backlog"])
async def test_flush_empties_every_channel(layer):
    channels = [fresh_channel(), await layer.new_channel(), await layer.new_channel()]
    for channel in channels:
        await layer.send(channel, _message("before flush"))
        await layer.send(channel, _message("also before flush"))
    await layer.flush()
    await asyncio.gather(*(expect_silence(layer, channel) for channel in channels))
    await layer.send(channels[1], _message("after flush"))
    assert await expect_message(layer, channels[1]) == _message("after flush")


@requirement("FLUSH-1", needs=["flush", "groups", "backlog"])
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
