"""EXT-1, ASYNC-1, LOOP-1: the shape of the API as Django Channels calls it.

Channels checks ``"groups" in layer.extensions``, awaits every method, calls them from
sync code through ``async_to_sync`` (a fresh event loop per call from a plain thread), and
keeps one layer instance for the whole process, so every one of these is relied upon.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.sync import iscoroutinefunction as asgiref_iscoroutinefunction

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    cancel_all,
    current_settings,
    expect_message,
    expect_silence,
    fresh_channel,
    fresh_group,
    offers,
)

EXTENSION_METHODS = {"groups": ("group_add", "group_discard", "group_send"), "flush": ("flush",)}


def _message(text: str) -> Message:
    return {"type": "test.api", "text": text}


def _is_coroutine_function(method: Any) -> bool:
    """asyncio's test, or asgiref's (which also accepts callables marked as coroutine functions)."""
    return inspect.iscoroutinefunction(method) or asgiref_iscoroutinefunction(method)


async def _await_call(layer: Layer, name: str, *args: object) -> Any:
    """Call ``layer.name(*args)``; the call must return an awaitable, whose result is returned."""
    result = getattr(layer, name)(*args)
    assert inspect.isawaitable(result), f"{name}() returned {result!r}, not an awaitable"
    return await asyncio.wait_for(result, current_settings().delivery_timeout)


# --- EXT-1 -----------------------------------------------------------------------------------

@requirement("EXT-1")
async def test_extensions_is_a_list_of_str(layer: Layer) -> None:
    # Read inside a running loop, as a consumer reads it (some layers keep their state per loop).
    extensions = getattr(layer, "extensions", None)
    assert isinstance(extensions, list), f"extensions must be a list, got {extensions!r}"
    assert all(isinstance(name, str) for name in extensions), f"extensions must hold str, got {extensions!r}"


def _check_extension_methods(layer: Layer, extension: str) -> None:
    for name in EXTENSION_METHODS[extension]:
        method = getattr(layer, name, None)
        assert method is not None, f"the layer lists {extension!r} in extensions but has no {name}()"
        assert _is_coroutine_function(method), (
            f"the layer lists {extension!r} but {name} is not a coroutine function: {method!r}")


@requirement("EXT-1", needs=["groups"])
def test_the_listed_groups_extension_has_coroutine_group_add_discard_and_send(layer: Layer) -> None:
    _check_extension_methods(layer, "groups")


@requirement("EXT-1", needs=["flush"])
def test_the_listed_flush_extension_has_a_coroutine_flush(layer: Layer) -> None:
    _check_extension_methods(layer, "flush")


@requirement("EXT-1", needs=["groups"])
async def test_the_listed_groups_extension_works(layer: Layer) -> None:
    group = fresh_group()
    member = await layer.new_channel()
    await layer.group_add(group, member)
    await layer.group_send(group, _message("to the group"))
    assert await expect_message(layer, member) == _message("to the group")
    await layer.group_discard(group, member)
    await layer.group_send(group, _message("after leaving"))
    await expect_silence(layer, member)


@requirement("EXT-1", needs=["flush"])
async def test_the_listed_flush_extension_works(layer: Layer) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, _message("flushed away"))
    await layer.flush()
    await expect_silence(layer, channel)


# --- ASYNC-1 ---------------------------------------------------------------------------------

@requirement("ASYNC-1")
async def test_new_channel_send_and_receive_return_awaitables(layer: Layer) -> None:
    channel = await _await_call(layer, "new_channel")
    pending_receive = layer.receive(channel)
    assert inspect.isawaitable(pending_receive), f"receive() returned {pending_receive!r}, not an awaitable"
    receive = asyncio.ensure_future(pending_receive)
    try:
        await _await_call(layer, "send", channel, _message("awaited"))
        assert await asyncio.wait_for(receive, current_settings().delivery_timeout) == _message("awaited")
    finally:
        await cancel_all([receive])


@requirement("ASYNC-1", needs=["groups"])
async def test_group_add_send_and_discard_return_awaitables(layer: Layer) -> None:
    group = fresh_group()
    member = await layer.new_channel()
    await _await_call(layer, "group_add", group, member)
    await _await_call(layer, "group_send", group, _message("to the group"))
    await _await_call(layer, "group_discard", group, member)


@requirement("ASYNC-1")
def test_send_receive_and_new_channel_work_from_sync_code_through_async_to_sync(layer: Layer, asgi_target: LayerTarget) -> None:
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, _message("from sync code"))
    assert async_to_sync(expect_message)(layer, channel) == _message("from sync code")
    if not offers(asgi_target, "normal-channels", "backlog"):
        return  # the normal-channel half needs normal channels that keep a message for a later receive
    normal = fresh_channel()
    async_to_sync(layer.send)(normal, _message("normal, from sync code"))
    assert async_to_sync(expect_message)(layer, normal) == _message("normal, from sync code")


@requirement("ASYNC-1", needs=["groups"])
def test_group_operations_work_from_sync_code_through_async_to_sync(layer: Layer) -> None:
    group = fresh_group()
    member = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, member)
    async_to_sync(layer.group_send)(group, _message("to the group"))
    assert async_to_sync(expect_message)(layer, member) == _message("to the group")
    async_to_sync(layer.group_discard)(group, member)


# --- LOOP-1 ----------------------------------------------------------------------------------

async def _receive_times_out(layer: Layer, channel: str) -> None:
    """A receive cancelled by a timeout: leaves per-loop state behind in layers that keep any."""
    try:
        message = await asyncio.wait_for(layer.receive(channel), 0.05)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"receive returned {message!r} although nothing was sent")


@requirement("LOOP-1")
def test_one_instance_works_from_event_loops_used_in_turn(layer: Layer, asgi_target: LayerTarget) -> None:
    group = fresh_group() if offers(asgi_target, "groups") else None  # the group steps need the extension

    async def first_loop() -> str:
        channel: str = await layer.new_channel()
        await _receive_times_out(layer, channel)
        await layer.send(channel, _message("sent in loop 1"))
        return channel

    async def second_loop(channel: str) -> None:
        assert await expect_message(layer, channel) == _message("sent in loop 1")
        await _receive_times_out(layer, channel)
        if group:
            await layer.group_add(group, channel)
        await layer.send(channel, _message("sent in loop 2"))

    async def third_loop(channel: str) -> None:
        assert await expect_message(layer, channel) == _message("sent in loop 2")
        if not group:
            return
        await layer.group_send(group, _message("group, loop 3"))
        assert await expect_message(layer, channel) == _message("group, loop 3")
        await layer.group_discard(group, channel)

    channel = asyncio.run(first_loop())
    asyncio.run(second_loop(channel))
    asyncio.run(third_loop(channel))


@requirement("LOOP-1", needs=["groups"])
def test_group_copies_reach_members_that_receive_in_the_next_event_loop(layer: Layer) -> None:
    """Members receiving one after another, the first in one event loop and the others in the
    next (each ``asyncio.run`` and ``async_to_sync`` call is a loop of its own): a copy the layer
    took in for them while the first loop ran must not end with that loop."""
    group = fresh_group()

    async def first_loop() -> list[str]:
        members = [await layer.new_channel() for _ in range(3)]
        for member in members:
            await layer.group_add(group, member)
        await layer.group_send(group, _message("to the room"))
        assert await expect_message(layer, members[0]) == _message("to the room")
        return members

    async def next_loop(members: list[str]) -> None:
        for member in members[1:]:
            assert await expect_message(layer, member) == _message("to the room"), f"{member} lost its copy"
        for member in members:
            await layer.group_discard(group, member)

    members = asyncio.run(first_loop())
    asyncio.run(next_loop(members))


@requirement("LOOP-1")
def test_a_message_for_a_sibling_channel_reaches_a_receive_in_the_next_event_loop(layer: Layer) -> None:
    """Two of one object's channels: a receive waits on the first while a message comes for the
    second, then the first's own message; the loop ends. A layer that took the second's message
    in (a process's channels often share one queue) must not lose it with that loop."""
    async def first_loop() -> str:
        waited: str = await layer.new_channel()
        sibling: str = await layer.new_channel()
        receive = asyncio.ensure_future(layer.receive(waited))
        try:
            await layer.send(sibling, _message("for the sibling"))
            await layer.send(waited, _message("for the waiting receive"))
            assert await asyncio.wait_for(receive, current_settings().delivery_timeout) == \
                _message("for the waiting receive")
        finally:
            await cancel_all([receive])
        return sibling

    sibling = asyncio.run(first_loop())
    assert asyncio.run(expect_message(layer, sibling)) == _message("for the sibling"), "lost with its loop"


@requirement("LOOP-1")
async def test_close_leaves_no_task_of_the_layer_running_and_the_layer_still_works(layer: Layer) -> None:
    if getattr(layer, "close", None) is None:
        pytest.skip("the layer has no close() method")
    before = asyncio.all_tasks()
    channel = await layer.new_channel()
    await _receive_times_out(layer, channel)
    await layer.send(channel, _message("before close"))
    assert await expect_message(layer, channel) == _message("before close")
    result = layer.close()
    if inspect.isawaitable(result):
        await asyncio.wait_for(result, current_settings().delivery_timeout)
    leftover = asyncio.all_tasks() - before
    if leftover:  # tolerate tasks close() cancelled that have not run their last step yet
        await asyncio.wait(leftover, timeout=current_settings().quiet_period)
    still_running = [task for task in leftover if not task.done()]
    assert not still_running, f"after close() the layer left {len(still_running)} task(s) running: {still_running!r}"

    await layer.send(channel, _message("after close"))
    assert await expect_message(layer, channel) == _message("after close")
