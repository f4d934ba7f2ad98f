"""EXP-*: message expiry and group membership expiry.

Letting time pass is what these rules are about, so these tests wait; the waits are kept
to about a second each and are measured from one start time, never summed up by guesswork.
"""

from __future__ import annotations

import asyncio

import pytest

from asgi_conformance.runner import LayerPool, requirement
from asgi_conformance.vocabulary import (
    LayerTarget,
    any_channel,
    expect_message,
    expect_silence,
    fresh_group,
    is_channel_full,
)


async def _wait_until(start: float, seconds: float) -> None:
    """Sleep until ``seconds`` after ``start`` (a loop.time() value)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start + seconds - loop.time()))


@requirement("EXP-1", needs=["expiry"])
async def test_a_message_unread_for_expiry_seconds_is_dropped_and_a_younger_one_still_arrives(
        layers: LayerPool, asgi_target: LayerTarget) -> None:
    layer = layers.make(expiry=1)
    channel = await any_channel(layer, asgi_target)
    start = asyncio.get_running_loop().time()
    await layer.send(channel, {"type": "test.old", "n": 1})
    await layer.send(channel, {"type": "test.old", "n": 2})
    await _wait_until(start, 0.6)
    await layer.send(channel, {"type": "test.young"})  # expires at about 1.6 s
    # The old ones expired at 1.0 s; no send happens between then and this receive.
    await _wait_until(start, 1.2)
    received = await expect_message(layer, channel)
    assert received["type"] == "test.young", f"an expired message was delivered: {received!r}"
    await expect_silence(layer, channel)


@requirement("EXP-2", needs=["expiry", "capacity"])
async def test_expired_messages_free_their_room_in_the_channel(layers: LayerPool, asgi_target: LayerTarget) -> None:
    layer = layers.make(expiry=1, capacity=1)
    channel = await any_channel(layer, asgi_target)
    start = asyncio.get_running_loop().time()
    await layer.send(channel, {"type": "test.old"})
    with pytest.raises(Exception) as caught:
        await layer.send(channel, {"type": "test.fill"})
    assert is_channel_full(caught.value), (
        f"capacity=1 should make the second send raise ChannelFull, got {caught.value!r}")
    await _wait_until(start, 1.2)
    try:
        await layer.send(channel, {"type": "test.after.expiry"})
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the expired message still took the channel's only place: send raised {exc!r}")
    assert (await expect_message(layer, channel))["type"] == "test.after.expiry"


@requirement("EXP-3", needs=["group-expiry", "groups"])
async def test_group_expiry_attribute_shows_the_configured_value_default_86400(
        layers: LayerPool, asgi_target: LayerTarget) -> None:
    expected = asgi_target.config.get("group_expiry", 86400)
    value = getattr(layers.make(), "group_expiry", None)
    assert value == expected, f"layer.group_expiry is {value!r}, expected {expected!r}"
    assert getattr(layers.make(group_expiry=7), "group_expiry", None) == 7


@requirement("EXP-3", needs=["group-expiry", "groups"])
async def test_group_membership_ends_after_group_expiry_and_re_adding_renews_it(
        layers: LayerPool, asgi_target: LayerTarget) -> None:
    layer = layers.make(group_expiry=2)
    group = fresh_group()
    expiring, renewed = await any_channel(layer, asgi_target, "expiring"), await any_channel(layer, asgi_target, "renewed")
    start = asyncio.get_running_loop().time()
    await layer.group_add(group, expiring)
    await layer.group_add(group, renewed)
    await layer.group_send(group, {"type": "test.before"})
    for channel in (expiring, renewed):
        assert (await expect_message(layer, channel))["type"] == "test.before"
    await _wait_until(start, 1.7)
    await layer.group_add(group, renewed)  # before the first membership ends: renews it until 3.7 s
    # ``expiring`` ended at 2 s; a second more is allowed for layers that count whole seconds.
    await _wait_until(start, 3.1)
    await layer.group_send(group, {"type": "test.after"})
    assert (await expect_message(layer, renewed))["type"] == "test.after", "re-adding did not renew the membership"
    await expect_silence(layer, expiring)
