"""The in-memory layer hands a send straight to a receiver already waiting on the same loop.

That hand-over must not lose or reorder a message when the receiver is cancelled after it
was handed the message but before it ran, and must not skip capacity. A send into a channel
at least half full lets the loop's receivers run first, so a sender on the same loop does not
outrun a receiver that keeps up.
"""

import asyncio

import pytest

from reference_layers.inmemory import ChannelFull, InMemoryChannelLayer


async def _waiting_receive(layer, channel):
    task = asyncio.ensure_future(layer.receive(channel))
    for _ in range(3):  # let it reach its wait
        await asyncio.sleep(0)
    assert not task.done()
    return task


def test_a_message_handed_to_a_receiver_cancelled_before_it_ran_is_received_next():
    async def scenario():
        layer = InMemoryChannelLayer()
        channel = await layer.new_channel()
        task = await _waiting_receive(layer, channel)
        await layer.send(channel, {"type": "m", "n": 1})  # handed over, the task has not run yet
        await layer.send(channel, {"type": "m", "n": 2})  # queued behind it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [(await layer.receive(channel))["n"] for _ in range(2)] == [1, 2]
        assert (await layer.statistics()).channels == {}

    asyncio.run(scenario())


def test_a_waiting_receiver_takes_the_message_directly_and_capacity_still_holds():
    async def scenario():
        layer = InMemoryChannelLayer(capacity=1)
        first, second = await layer.new_channel(), await layer.new_channel()
        await layer.send(first, {"type": "m"})  # the process's one slot (CAP-4: shared)
        task = await _waiting_receive(layer, second)
        with pytest.raises(ChannelFull):
            await layer.send(second, {"type": "m"})
        await layer.receive(first)
        await layer.send(second, {"type": "m", "n": 7})
        assert (await asyncio.wait_for(task, 5))["n"] == 7

    asyncio.run(scenario())


def test_a_sender_on_the_receivers_loop_lets_it_drain_before_the_channel_fills():
    async def scenario():
        layer = InMemoryChannelLayer(capacity=10)
        channel = await layer.new_channel()
        received = []

        async def drain():
            for _ in range(100):
                received.append((await layer.receive(channel))["n"])

        task = asyncio.ensure_future(drain())
        for n in range(100):  # ten times the capacity, in a tight loop: no ChannelFull
            await layer.send(channel, {"type": "m", "n": n})
        await asyncio.wait_for(task, 5)
        assert received == list(range(100))
        assert (await layer.statistics()).channel_full_raised == 0

    asyncio.run(scenario())


def test_a_send_cancelled_while_letting_receivers_run_has_sent_nothing():
    async def scenario():
        layer = InMemoryChannelLayer(capacity=2)
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "m", "n": 1})  # half full: the next send lets others run first
        sending = asyncio.ensure_future(layer.send(channel, {"type": "m", "n": 2}))
        await asyncio.sleep(0)  # it starts, and lets the loop run
        assert not sending.done()
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        assert (await layer.receive(channel))["n"] == 1
        assert (await layer.statistics()).channels == {}

    asyncio.run(scenario())
