"""CHAN-5 and CHAN-8: a waiting receive that is cancelled (by its caller's timeout, or a
task cancelled as a client disconnects) leaves the layer live and loses no message.

Cancellation lands at every point a layer may be in: before a message arrives, just after one
was sent, in the same turn a send from another thread wakes it. Every wait is bounded by the
delivery timeout, so a layer that strands a waiter fails clearly instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    cancel_all,
    channel_of_kind,
    current_settings,
    expect_message,
    expect_silence,
    indexes,
    now_waiting,
    numbered_message,
    outcome_of_cancelled,
    results_of,
    start_receives,
    yield_steps,
)

# --- CHAN-5 ----------------------------------------------------------------------------------

@requirement("CHAN-5")
async def test_cancelling_one_waiting_receive_leaves_the_other_waiters_served(layer: Layer) -> None:
    channel = await layer.new_channel()
    first, *others = receives = start_receives(layer, channel, 3)
    try:
        await now_waiting(*receives)
        first.cancel()
        try:
            result = await asyncio.wait_for(first, current_settings().delivery_timeout)
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError(f"a cancelled receive returned {result!r} although nothing was sent")
        await layer.send(channel, numbered_message(0))
        await layer.send(channel, numbered_message(1))
        got = indexes(await results_of(others, "receives still waiting after another was cancelled"))
        assert sorted(got) == [0, 1]
        await layer.send(channel, numbered_message(2))
        assert (await expect_message(layer, channel))["index"] == 2
        await expect_silence(layer, channel)
    finally:
        await cancel_all(receives)


@requirement("CHAN-5")
async def test_a_send_from_another_thread_reaches_the_other_waiter_when_the_woken_one_is_cancelled(layer: Layer) -> None:
    """As in Django: a view sends through async_to_sync while the consumer that was about to
    get the message disconnects. This loop is blocked on purpose while the other thread sends,
    so the send's wake-up is still queued when the receive it chose is cancelled."""
    channel = await layer.new_channel()
    first, second = receives = start_receives(layer, channel, 2)
    try:
        await now_waiting(*receives)
        errors: list[BaseException] = []

        def send_from_another_loop() -> None:
            try:
                asyncio.run(layer.send(channel, numbered_message(0)))
            except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
                errors.append(exc)

        sender = threading.Thread(target=send_from_another_loop)
        sender.start()
        sender.join(current_settings().delivery_timeout)
        assert not sender.is_alive(), "a send from another thread's event loop did not complete"
        assert not errors, f"a send from another thread's event loop raised {errors[0]!r}"
        first.cancel()
        delivered = await outcome_of_cancelled(first)
        if delivered is None:
            delivered, = await results_of([second], "receives still waiting after another was cancelled")
        assert delivered == numbered_message(0)
    finally:
        await cancel_all(receives)


@requirement("CHAN-5")
@pytest.mark.parametrize("kind", ["normal", "process-specific"])
async def test_after_a_receive_times_out_the_next_receive_gets_later_messages(
        layer: Layer, asgi_target: LayerTarget, kind: str) -> None:
    channel = await channel_of_kind(layer, asgi_target, kind, "backlog")
    for index in range(3):
        try:
            message = await asyncio.wait_for(layer.receive(channel), 0.02)
        except asyncio.TimeoutError:
            pass  # the usual case: wait_for cancelled the waiting receive
        else:
            raise AssertionError(f"receive returned {message!r} although nothing was sent")
        await layer.send(channel, numbered_message(index))
        assert (await expect_message(layer, channel))["index"] == index


# --- CHAN-8 ----------------------------------------------------------------------------------

@requirement("CHAN-8")
@pytest.mark.parametrize("kind", ["normal", "process-specific"])
async def test_a_message_sent_just_before_a_waiting_receive_is_cancelled_is_not_lost(
        layer: Layer, asgi_target: LayerTarget, kind: str) -> None:
    # The later receive begins after the send, so a normal channel needs a backlog.
    channel = await channel_of_kind(layer, asgi_target, kind, "backlog")
    for index in range(24):
        receive = asyncio.ensure_future(layer.receive(channel))
        await yield_steps(3)
        await layer.send(channel, numbered_message(index))
        await yield_steps(index % 4)  # cancel at a different point of the hand-over each time
        receive.cancel()
        message = await outcome_of_cancelled(receive)
        if message is None:
            message = await expect_message(layer, channel)
        assert message["index"] == index, f"expected message {index}, got {message!r}"


@requirement("CHAN-8")
async def test_a_message_sent_just_after_a_waiting_receive_is_cancelled_is_not_lost(layer: Layer) -> None:
    channel = await layer.new_channel()
    for index in range(24):
        receive = asyncio.ensure_future(layer.receive(channel))
        await yield_steps(index % 4)
        receive.cancel()
        await layer.send(channel, numbered_message(index))
        message = await outcome_of_cancelled(receive)
        if message is None:
            message = await expect_message(layer, channel)
        assert message["index"] == index, f"expected message {index}, got {message!r}"
