"""CHAN-*: ordering, at-most-once delivery, waiting receives, process-specific channels and
fairness between channels (cancelled receives, CHAN-5 and CHAN-8: ``test_cancellation``).

Receives that must wait run as tasks; the test proves they are still waiting by watching
them for the quiet period, and every wait for a message is bounded by the delivery timeout,
so a broken layer fails clearly instead of hanging, and a slow one is never failed for speed.
"""

from __future__ import annotations

import asyncio

import pytest

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    cancel_all,
    channel_of_kind,
    current_settings,
    expect_message,
    expect_silence,
    first_finished,
    fresh_channel,
    indexes,
    now_waiting,
    numbered_message,
    offers,
    process_prefix_of,
    results_of,
    start_receives,
    still_waiting,
    yield_steps,
)

IDLE_SECONDS = 6.5  # longer than the 5 s socket timeouts common in network clients


# --- CHAN-1 ----------------------------------------------------------------------------------

@requirement("CHAN-1")
@pytest.mark.parametrize("kind", ["normal", "process-specific"])
async def test_one_writer_one_reader_messages_arrive_in_send_order(layer: Layer, asgi_target: LayerTarget, kind: str) -> None:
    channel = await channel_of_kind(layer, asgi_target, kind, "backlog")
    for index in range(50):
        await layer.send(channel, numbered_message(index))
    received = [await expect_message(layer, channel) for _ in range(50)]
    assert indexes(received) == list(range(50))


@requirement("CHAN-1")
async def test_messages_sent_while_the_reader_waits_arrive_in_send_order(layer: Layer) -> None:
    channel = await layer.new_channel()
    received: list[Message] = []

    async def read() -> None:
        for _ in range(20):
            received.append(await layer.receive(channel))

    reader = asyncio.ensure_future(read())
    try:
        await now_waiting(reader)
        for index in range(20):
            await layer.send(channel, numbered_message(index))
            await yield_steps(index % 3)  # the reader is sometimes ahead of the writer, sometimes behind
        await results_of([reader], "reader loops")
    finally:
        await cancel_all([reader])
    assert indexes(received) == list(range(20))


# --- CHAN-2 ----------------------------------------------------------------------------------

async def _more_receivers_than_messages(layer: Layer, channel: str) -> None:
    receives = start_receives(layer, channel, 8)
    try:
        await now_waiting(*receives)
        for index in range(4):
            await layer.send(channel, numbered_message(index))
        done = await first_finished(receives, 4)
        waiting = [task for task in receives if not task.done()]
        await still_waiting(*waiting)  # no receive gets a second copy of a message
        got = indexes(task.result() for task in done)
        assert sorted(got) == [0, 1, 2, 3], f"4 messages sent to 8 waiting receives, they got {got}"
    finally:
        await cancel_all(receives)


@requirement("CHAN-2")
async def test_four_messages_to_eight_waiting_receives_on_a_process_specific_channel_are_each_received_once(
        layer: Layer) -> None:
    await _more_receivers_than_messages(layer, await layer.new_channel())


@requirement("CHAN-2", needs=["normal-channels"])
async def test_four_messages_to_eight_waiting_receives_on_a_normal_channel_are_each_received_once(layer: Layer) -> None:
    await _more_receivers_than_messages(layer, fresh_channel())


# --- CHAN-3 ----------------------------------------------------------------------------------

@requirement("CHAN-3")
@pytest.mark.parametrize("kind", ["normal", "process-specific"])
async def test_send_with_no_receiver_completes_without_waiting_for_one(
        layer: Layer, asgi_target: LayerTarget, kind: str) -> None:
    channel = await channel_of_kind(layer, asgi_target, kind)
    for index in range(10):
        try:
            await asyncio.wait_for(layer.send(channel, numbered_message(index)), current_settings().delivery_timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"send #{index} to {channel!r} with no receiver did not complete within "
                f"{current_settings().delivery_timeout:g} s: send blocks waiting for a receiver") from None


# --- CHAN-4 ----------------------------------------------------------------------------------

@requirement("CHAN-4")
async def test_a_receive_idle_for_over_six_seconds_still_returns_the_next_message(
        layer: Layer, asgi_target: LayerTarget) -> None:
    # Every kind of channel the layer offers (a normal one only where it has them).
    channels = [await layer.new_channel()] + ([fresh_channel()] if offers(asgi_target, "normal-channels") else [])
    receives = {channel: asyncio.ensure_future(layer.receive(channel)) for channel in channels}
    try:
        await still_waiting(*receives.values(), period=IDLE_SECONDS)
        messages = {channel: numbered_message(index, "late") for index, channel in enumerate(channels, 1)}
        for channel, message in messages.items():
            await layer.send(channel, message)
        results = await results_of(list(receives.values()), "receives idle for 6.5 s")
        assert results == list(messages.values())
    finally:
        await cancel_all(list(receives.values()))


# --- CHAN-6 ----------------------------------------------------------------------------------

async def _sibling_channels(layer: Layer) -> tuple[str, str]:
    """``p!a`` and ``p!b``: two local names after the non-local part of one new_channel()."""
    non_local = process_prefix_of(await layer.new_channel())
    return non_local + "a", non_local + "b"


@requirement("CHAN-6", needs=["backlog"])
async def test_process_specific_siblings_are_delivered_apart_each_in_order(layer: Layer) -> None:
    first, second = await _sibling_channels(layer)
    for index in range(10):
        await layer.send(first, numbered_message(index, "first"))
        await layer.send(second, numbered_message(index, "second"))
    from_second = [await expect_message(layer, second) for _ in range(10)]
    from_first = [await expect_message(layer, first) for _ in range(10)]
    await asyncio.gather(expect_silence(layer, first), expect_silence(layer, second))
    assert from_second == [numbered_message(index, "second") for index in range(10)]
    assert from_first == [numbered_message(index, "first") for index in range(10)]


@requirement("CHAN-6", needs=["backlog"])  # the first sibling is read after the send to it
async def test_a_receive_waiting_on_one_sibling_ignores_messages_for_the_other(layer: Layer) -> None:
    first, second = await _sibling_channels(layer)
    waiting = asyncio.ensure_future(layer.receive(second))
    try:
        await now_waiting(waiting)
        await layer.send(first, numbered_message(1, "first"))
        await still_waiting(waiting)
        assert await expect_message(layer, first) == numbered_message(1, "first")
        await layer.send(second, numbered_message(2, "second"))
        assert await results_of([waiting], "receives on the second sibling") == [numbered_message(2, "second")]
    finally:
        await cancel_all([waiting])


# --- CHAN-7 ----------------------------------------------------------------------------------

@requirement("CHAN-7", needs=["normal-channels", "backlog"])
async def test_messages_beyond_the_waiting_receives_stay_for_later_receives(layer: Layer) -> None:
    channel = fresh_channel()
    receives = start_receives(layer, channel, 5)
    try:
        await now_waiting(*receives)
        for index in range(12):
            await layer.send(channel, numbered_message(index))
        got = indexes(await results_of(receives, "waiting receives"))
        got += indexes([await expect_message(layer, channel) for _ in range(12 - len(receives))])
        await expect_silence(layer, channel)
    finally:
        await cancel_all(receives)
    assert sorted(got) == list(range(12)), f"each of 12 messages must reach exactly one receiver, got {got}"


@requirement("CHAN-7", needs=["normal-channels"])
async def test_each_message_sent_one_at_a_time_reaches_one_of_the_waiting_receives(layer: Layer) -> None:
    channel = fresh_channel()
    receives = start_receives(layer, channel, 4)
    try:
        await now_waiting(*receives)
        for index in range(4):  # each send finds the channel empty and the rest still waiting
            await layer.send(channel, numbered_message(index))
            await first_finished(receives, index + 1)
        got = indexes(task.result() for task in receives)
    finally:
        await cancel_all(receives)
    assert sorted(got) == [0, 1, 2, 3], f"each of 4 messages must reach exactly one receive, got {got}"


@requirement("CHAN-7", needs=["normal-channels"])
async def test_concurrent_receive_loops_on_a_normal_channel_get_every_message_exactly_once(layer: Layer) -> None:
    channel = fresh_channel()
    received: list[int] = []
    arrived = asyncio.Condition()

    async def receive_loop() -> None:
        while True:
            message = await layer.receive(channel)
            async with arrived:
                received.append(message["index"])
                arrived.notify_all()

    loops = [asyncio.ensure_future(receive_loop()) for _ in range(4)]
    try:
        await now_waiting(*loops)
        for index in range(40):
            await layer.send(channel, numbered_message(index))
            await yield_steps(index % 3)
        async with arrived:
            try:
                await asyncio.wait_for(arrived.wait_for(lambda: len(received) >= 40), current_settings().delivery_timeout)
            except asyncio.TimeoutError:
                raise AssertionError(f"only {len(received)} of 40 messages reached the 4 receive loops") from None
        await still_waiting(*loops)  # and no late second copy
    finally:
        await cancel_all(loops)
    assert sorted(received) == list(range(40)), f"duplicates or losses: {sorted(received)}"


# --- CHAN-9 ----------------------------------------------------------------------------------

FLOOD_SIZE = 1000
FLOOD_WINDOW = 20  # messages in flight at most, so the flood never hits the capacity
QUIET_SENT_AFTER = 100


@requirement("CHAN-9")
async def test_a_flood_on_one_channel_does_not_starve_a_receive_waiting_on_a_quiet_sibling(layer: Layer) -> None:
    busy = await layer.new_channel()
    quiet = await layer.new_channel()
    counts = {"sent": 0, "received": 0}
    progress = asyncio.Condition()
    quiet_arrived = asyncio.Event()

    async def flood() -> None:
        while counts["sent"] < FLOOD_SIZE and not quiet_arrived.is_set():
            async with progress:
                await progress.wait_for(lambda: counts["sent"] - counts["received"] < FLOOD_WINDOW)
            await layer.send(busy, numbered_message(counts["sent"], "flood"))
            counts["sent"] += 1

    async def drain() -> None:
        while True:
            await layer.receive(busy)
            async with progress:
                counts["received"] += 1
                progress.notify_all()

    quiet_receive = asyncio.ensure_future(layer.receive(quiet))
    flood_sent_on_arrival: list[int] = []

    def note_arrival(_: object) -> None:
        flood_sent_on_arrival.append(counts["sent"])
        quiet_arrived.set()

    quiet_receive.add_done_callback(note_arrival)
    flooder, drainer = asyncio.ensure_future(flood()), asyncio.ensure_future(drain())
    tasks = [quiet_receive, flooder, drainer]
    try:
        async with progress:
            try:
                await asyncio.wait_for(progress.wait_for(lambda: counts["received"] >= QUIET_SENT_AFTER),
                                       current_settings().delivery_timeout)
            except asyncio.TimeoutError:
                raise AssertionError(f"the flood did not get going: {counts}") from None
        await layer.send(quiet, numbered_message(0, "quiet"))
        assert await results_of([quiet_receive], "receives on the quiet channel") == [numbered_message(0, "quiet")]
        assert flood_sent_on_arrival[0] < FLOOD_SIZE, (
            f"the quiet channel's message arrived only after all {FLOOD_SIZE} flood messages "
            f"on its sibling were sent (it was sent after {QUIET_SENT_AFTER}): the flood starved it")
        await results_of([flooder], "flood senders")
        async with progress:
            await asyncio.wait_for(progress.wait_for(lambda: counts["received"] == counts["sent"]),
                                   current_settings().delivery_timeout)
    finally:
        await cancel_all(tasks)
