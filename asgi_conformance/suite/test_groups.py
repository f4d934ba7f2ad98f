"""GRP-*: group membership and group_send: one copy per member per send, no-op discards and
sends, and the size limit on group_send.

Members are process-specific channels from new_channel(), as Django consumers use; each
test watches every member for a quiet period after its expected copies, so a second copy
fails the test.
"""

from __future__ import annotations

import asyncio

import pytest

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    declared_size_limit,
    expect_message,
    expect_silence,
    fresh_group,
)

GROUPS = ["groups"]  # members come from new_channel(), so no other backlog is needed


def _message(text: str) -> Message:
    return {"type": "test.group", "text": text}


async def _all_silent(layer: Layer, channels: list[str]) -> None:
    """No channel gets anything more (watched together, for one quiet period)."""
    await asyncio.gather(*(expect_silence(layer, channel) for channel in channels))


async def _members(layer: Layer, count: int) -> list[str]:
    return [await layer.new_channel() for _ in range(count)]


@requirement("GRP-1", needs=GROUPS)
async def test_group_send_delivers_one_copy_to_each_member(layer: Layer) -> None:
    group = fresh_group()
    members = await _members(layer, 3)
    for member in members:
        await layer.group_add(group, member)
    await layer.group_send(group, _message("hello"))
    for member in members:
        assert await expect_message(layer, member) == _message("hello")
    await _all_silent(layer, members)


@requirement("GRP-1", needs=GROUPS)
async def test_group_add_is_idempotent_a_channel_added_twice_gets_one_copy(layer: Layer) -> None:
    group = fresh_group()
    member, = await _members(layer, 1)
    await layer.group_add(group, member)
    await layer.group_add(group, member)
    await layer.group_send(group, _message("once"))
    assert await expect_message(layer, member) == _message("once")
    await expect_silence(layer, member)


@requirement("GRP-2", needs=GROUPS)
async def test_group_discard_removes_the_member_and_only_it(layer: Layer) -> None:
    group = fresh_group()
    leaving, staying = await _members(layer, 2)
    await layer.group_add(group, leaving)
    await layer.group_add(group, staying)
    await layer.group_discard(group, leaving)
    await layer.group_send(group, _message("after discard"))
    assert await expect_message(layer, staying) == _message("after discard")
    await _all_silent(layer, [leaving, staying])


@requirement("GRP-2", needs=GROUPS)
async def test_discarding_a_non_member_or_from_an_unknown_group_is_a_no_op(layer: Layer) -> None:
    group = fresh_group()
    member, stranger = await _members(layer, 2)
    await layer.group_add(group, member)
    await layer.group_discard(group, stranger)  # must not raise
    await layer.group_discard(fresh_group("unknown"), member)  # must not raise
    await layer.group_discard(group, member)
    await layer.group_discard(group, member)  # discarding twice must not raise either
    await layer.group_add(group, stranger)
    await layer.group_send(group, _message("still works"))
    assert await expect_message(layer, stranger) == _message("still works")
    await expect_silence(layer, member)


@requirement("GRP-3", needs=GROUPS)
async def test_group_send_to_an_unknown_or_emptied_group_does_nothing_and_raises_nothing(layer: Layer) -> None:
    bystander, former = await _members(layer, 2)
    await layer.group_add(fresh_group("other"), bystander)
    await layer.group_send(fresh_group("unknown"), _message("nobody"))
    emptied = fresh_group("emptied")
    await layer.group_add(emptied, former)
    await layer.group_discard(emptied, former)
    await layer.group_send(emptied, _message("nobody"))
    await _all_silent(layer, [bystander, former])


@requirement("GRP-4", needs=GROUPS)
async def test_a_channel_in_two_groups_gets_one_copy_per_group_send_to_each(layer: Layer) -> None:
    first, second = fresh_group("first"), fresh_group("second")
    member, = await _members(layer, 1)
    await layer.group_add(first, member)
    await layer.group_add(second, member)
    await layer.group_send(first, _message("to first"))
    await layer.group_send(second, _message("to second"))
    assert await expect_message(layer, member) == _message("to first")
    assert await expect_message(layer, member) == _message("to second")
    await expect_silence(layer, member)


@requirement("GRP-5", needs=["groups"])
async def test_group_send_of_an_oversize_message_raises_message_too_large(layer: Layer, asgi_target: LayerTarget) -> None:
    limit, too_large = declared_size_limit(asgi_target)
    group = fresh_group()
    member, = await _members(layer, 1)
    await layer.group_add(group, member)
    with pytest.raises(too_large):
        await layer.group_send(group, {"type": "test.oversize", "payload": b"x" * (limit + 1)})
    await expect_silence(layer, member)
