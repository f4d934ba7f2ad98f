"""CAP-*: capacity per channel, ChannelFull, and group_send's silence about full members."""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

import pytest

from asgi_conformance.runner import LayerPool, requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    any_channel,
    expect_message,
    expect_silence,
    fresh_channel,
    fresh_group,
    is_channel_full,
    offers,
    process_prefix_of,
)


@requirement("CAP-1", needs=["capacity"])
async def test_n_sends_fit_and_the_next_raises_channel_full(layers: LayerPool, asgi_target: LayerTarget) -> None:
    layer = layers.make(capacity=3)
    channel = await any_channel(layer, asgi_target)
    for index in range(3):
        await layer.send(channel, {"type": "test.fill", "index": index})
    with pytest.raises(Exception) as caught:
        await layer.send(channel, {"type": "test.fill", "index": 3})
    assert is_channel_full(caught.value), f"expected ChannelFull, got {caught.value!r}"
    for index in range(3):
        assert (await expect_message(layer, channel))["index"] == index


async def _assert_full(layer: Layer, channel: str, index: int) -> None:
    """The next send to ``channel`` must raise ChannelFull."""
    with pytest.raises(Exception) as caught:
        await layer.send(channel, {"type": "test.fill", "index": index})
    assert is_channel_full(caught.value), f"expected ChannelFull on {channel!r}, got {caught.value!r}"


async def _capacity_problem(layer: Layer, channel: str, expected: int) -> str | None:
    """Why ``channel`` does not hold exactly ``expected`` messages; None if it does."""
    for index in range(expected):
        try:
            await layer.send(channel, {"type": "test.fill", "index": index})
        except Exception as exc:  # noqa: BLE001
            return f"{channel!r}: send {index + 1} of {expected} raised {exc!r}"
    try:
        await layer.send(channel, {"type": "test.fill", "index": expected})
    except Exception as exc:  # noqa: BLE001
        if is_channel_full(exc):
            return None
        return f"{channel!r}: send {expected + 1} raised {exc!r}, not ChannelFull"
    return f"{channel!r}: send {expected + 1} fitted, capacity should be {expected}"


@requirement("CAP-2", needs=["capacity"])
async def test_a_receive_frees_room_for_the_next_send(layers: LayerPool, asgi_target: LayerTarget) -> None:
    layer = layers.make(capacity=2)
    channel = await any_channel(layer, asgi_target)
    for index in range(2):
        await layer.send(channel, {"type": "test.fill", "index": index})
    await _assert_full(layer, channel, 2)
    assert (await expect_message(layer, channel))["index"] == 0
    await layer.send(channel, {"type": "test.fill", "index": 2})
    assert [(await expect_message(layer, channel))["index"] for _ in range(2)] == [1, 2]


@requirement("CAP-3", needs=["capacity", "normal-channels", "backlog"])  # patterns match normal names
async def test_channel_capacity_patterns_override_the_default_and_the_first_match_wins(layers: LayerPool) -> None:
    # Every fresh channel matches the last pattern too, so only first-match-wins gives 1, 2, 4.
    layer = layers.make(capacity=5, channel_capacity={
        "asgi-test.glob-*": 1,
        re.compile(r"asgi-test\.regex-[0-9a-f]+"): 2,
        "asgi-test.big-*": 4,
        "asgi-test.*": 3,
    })
    expected = {
        fresh_channel("glob"): 1,
        fresh_channel("regex"): 2,
        fresh_channel("big"): 4,
        fresh_channel("other"): 3,
        f"unmatched.{secrets.token_hex(6)}": 5,
    }
    problems = [problem for channel, capacity in expected.items()
                if (problem := await _capacity_problem(layer, channel, capacity))]
    assert not problems, "channel_capacity was not applied:\n" + "\n".join(problems)


@requirement("CAP-4", needs=["capacity", "backlog"])  # p!a and p!b are not new_channel() names
async def test_process_specific_channels_share_the_capacity_of_their_non_local_part(layers: LayerPool) -> None:
    layer = layers.make(capacity=2)
    prefix = process_prefix_of(await layer.new_channel())
    first, second = prefix + "a", prefix + "b"
    await layer.send(first, {"type": "test.fill", "to": "a"})
    await layer.send(second, {"type": "test.fill", "to": "b"})
    await _assert_full(layer, first, 2)
    await _assert_full(layer, second, 2)
    assert (await expect_message(layer, first))["to"] == "a"
    assert (await expect_message(layer, second))["to"] == "b"


class IndependentMembers(NamedTuple):
    """Two channels whose capacities are independent, each with the layer instance that owns
    (and reads) it."""

    full_layer: Layer
    full: str
    free_layer: Layer
    free: str


async def _members_of_independent_capacity(layers: LayerPool, target: LayerTarget) -> IndependentMembers:
    """Two channels whose capacities are independent, to fill one and leave the other free.

    Normal channels where the layer has them; else two new_channel() names with different
    non-local parts (capacity is per non-local part, CAP-4); else one new_channel() name from
    each of two layer instances, which share state only where the layer is cross-process.
    """
    layer = layers.make(capacity=1)
    if offers(target, "normal-channels", "backlog"):
        return IndependentMembers(layer, fresh_channel("full"), layer, fresh_channel("free"))
    full, free = await layer.new_channel("asgi-test-full"), await layer.new_channel("asgi-test-free")
    if process_prefix_of(full) != process_prefix_of(free):
        return IndependentMembers(layer, full, layer, free)
    if not offers(target, "cross-process"):
        pytest.skip("needs two channels of independent capacity: normal channels "
                    f"({target.missing('normal-channels') or target.missing('backlog')}), or new_channel() "
                    "names with different non-local parts (this layer's share one), or channels of two "
                    f"layer instances ({target.missing('cross-process')})")
    other = layers.make(capacity=1)
    return IndependentMembers(layer, full, other, await other.new_channel())


@requirement("CAP-5", needs=["capacity", "groups"])
async def test_group_send_to_a_full_member_raises_nothing_and_the_others_get_the_message(
        layers: LayerPool, asgi_target: LayerTarget) -> None:
    full_layer, full, free_layer, free = await _members_of_independent_capacity(layers, asgi_target)
    group = fresh_group()
    await full_layer.group_add(group, full)  # each member joins through the instance that owns it
    await free_layer.group_add(group, free)
    await full_layer.send(full, {"type": "test.direct"})
    try:
        await full_layer.group_send(group, {"type": "test.group"})
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"group_send raised {exc!r} because one member was full")
    assert (await expect_message(free_layer, free))["type"] == "test.group"
    assert (await expect_message(full_layer, full))["type"] == "test.direct"
    await expect_silence(full_layer, full)
