"""core.waiters: the receives waiting per channel, as both network layers keep them. No server.

Cancelled receives leave done futures behind until they are taken or removed; a message must go
to the oldest receive still waiting on its channel, and the counts the layers read (``size``,
``wanted``) must follow every way a waiter comes and goes."""

from __future__ import annotations

import asyncio

import pytest

from reference_layers.core.waiters import Waiters


def test_a_message_goes_to_the_oldest_live_waiter_of_its_channel():
    async def scenario():
        loop = asyncio.get_running_loop()
        waiters = Waiters()
        first, second, third, other = (loop.create_future() for _ in range(4))
        for future in (first, second, third):
            waiters.add("p!a", future)
        waiters.add("p!b", other)
        first.cancel()  # a receive cancelled: its future stays until taken
        assert waiters.size == 4 and waiters.wanted() == {"p!a": 2, "p!b": 1}
        assert waiters.hand("p!a", b"m1") and second.result() == b"m1"
        assert waiters.size == 2 and waiters.wanted() == {"p!a": 1, "p!b": 1}
        assert waiters.remove("p!a", third) and "p!a" not in waiters.first
        assert not waiters.hand("p!a", b"m2") and not waiters.remove("p!a", third)
        assert waiters.take("p!b") is other and waiters.size == 0 and not waiters.first

    asyncio.run(scenario())


def test_fail_reaches_every_live_waiter_and_leaves_none():
    async def scenario():
        loop = asyncio.get_running_loop()
        waiters = Waiters()
        futures = [loop.create_future() for _ in range(3)]
        waiters.add("p!a", futures[0])
        waiters.add("p!a", futures[1])
        waiters.add("p!b", futures[2])
        futures[1].set_result(b"handed meanwhile")
        waiters.fail(RuntimeError("closed"))
        with pytest.raises(RuntimeError):
            futures[0].result()
        with pytest.raises(RuntimeError):
            futures[2].result()
        assert futures[1].result() == b"handed meanwhile"
        assert waiters.size == 0 and not waiters.first and waiters.wanted() == {}

    asyncio.run(scenario())
