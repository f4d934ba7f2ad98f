"""Our Redis layer's read-ahead (copies.py) and waiters on queues a pop emptied (emptied.py).

A pop for a process's own channels takes more of a queue's waiting messages than the receives
want, so receives one after another find them without a round trip. The spec must hold all the
same: room exact for senders in any process, order, statistics, nothing lost when the layer
closes; and a waiter the pop before left with an empty queue is still reached by the next push.
Checked on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from reference_layers.base import ChannelFull
from reference_layers.redis.copies import READ_AHEAD
from reference_layers.redis.receiver import LOOK_AGAIN
from tests.helpers import CALL_LIMIT, closing, fresh, run
from tests.test_redis_layer import layer_on, raw

PREFIX = "t-read-ahead"


def _owner_and_other(redis_urls, capacity: int):
    """Two layers on the same server, as two processes would have them: ``owner`` receives,
    ``other`` sends (and flushes)."""
    return (layer_on(redis_urls, capacity=capacity, prefix=PREFIX),
            layer_on(redis_urls, capacity=capacity, prefix=PREFIX))


async def _some_read_ahead(owner, other, count: int) -> str:
    """A channel of ``owner``'s that ``other`` sent ``count`` messages to, the first received:
    the pop for it read the rest ahead (counted on the server all the same)."""
    channel = await owner.new_channel()
    for n in range(count):
        await other.send(channel, {"n": n})
    assert await owner.receive(channel) == {"n": 0}
    return channel


def test_a_sender_in_another_process_finds_exactly_the_room_a_receive_made(redis_urls):
    owner, other = _owner_and_other(redis_urls, capacity=5)

    async def body():
        channel = await _some_read_ahead(owner, other, 5)  # full, and four of it read ahead
        await other.send(channel, {"n": 5})
        with pytest.raises(ChannelFull):
            await other.send(channel, {"n": 6})
        assert [await owner.receive(channel) for _ in range(5)] == [{"n": n} for n in range(1, 6)]
        await other.close()

    run(closing(owner, body()))


def test_messages_read_ahead_are_counted_by_statistics_and_come_in_order(redis_urls):
    layer = layer_on(redis_urls, prefix=PREFIX)

    async def body():
        channel = await layer.new_channel()
        for n in range(4):
            await layer.send(channel, {"n": n})
        assert await layer.receive(channel) == {"n": 0}
        assert (await layer.statistics([channel])).channels[channel].waiting == 3
        await layer.send(channel, {"n": 4})
        assert [await layer.receive(channel) for _ in range(4)] == [{"n": n} for n in range(1, 5)]
        assert (await layer.statistics([channel])).channels[channel].waiting == 0

    run(closing(layer, body()))


def test_more_messages_than_one_pop_reads_ahead_all_arrive_in_order(redis_urls):
    count = 3 * READ_AHEAD + 5
    layer = layer_on(redis_urls, prefix=PREFIX, capacity=count)

    async def body():
        channel = await layer.new_channel()
        for n in range(count):
            await layer.send(channel, {"n": n})
        assert [await layer.receive(channel) for _ in range(count)] == [{"n": n} for n in range(count)]

    run(closing(layer, body()))


def test_messages_read_ahead_go_back_to_redis_when_the_layer_closes(redis_urls):
    layer = layer_on(redis_urls, prefix=PREFIX)

    async def first_loop(channel):
        for n in range(3):
            await layer.send(channel, {"n": n})
        assert await layer.receive(channel) == {"n": 0}
        await layer.close()

    async def second_loop(channel):  # a new event loop: nothing of the first loop's is held here
        assert [await asyncio.wait_for(layer.receive(channel), CALL_LIMIT) for _ in range(2)] == [{"n": 1}, {"n": 2}]

    channel = run(layer.new_channel())
    run(first_loop(channel))
    run(closing(layer, second_loop(channel)))


def test_a_member_waiting_again_on_a_queue_the_last_pop_emptied_gets_what_came_meanwhile(redis_urls):
    layer = layer_on(redis_urls, prefix=PREFIX)
    other = layer_on(redis_urls, prefix=PREFIX)

    async def body():
        first, second, third = [await layer.new_channel() for _ in range(3)]
        keeps_the_loop = asyncio.ensure_future(layer.receive(third))  # one waiter stays throughout
        waiting = asyncio.ensure_future(layer.receive(first))
        await other.send(first, {"n": 1})
        assert await asyncio.wait_for(waiting, CALL_LIMIT) == {"n": 1}  # its pop left first's queue empty
        waiting = asyncio.ensure_future(layer.receive(second))
        await other.send(first, {"n": 2})  # rung while nobody waits on first
        await other.send(second, {"n": 3})  # rung after it: once delivered, the ring of n 2 was heard
        assert await asyncio.wait_for(waiting, CALL_LIMIT) == {"n": 3}
        # No push comes after this receive: it must pop itself, not wait for LOOK_AGAIN.
        assert await asyncio.wait_for(layer.receive(first), LOOK_AGAIN / 2) == {"n": 2}
        await other.send(third, {"n": 4})
        assert await asyncio.wait_for(keeps_the_loop, CALL_LIMIT) == {"n": 4}
        await other.close()

    run(closing(layer, body()))


async def _hold_some(owner, other, capacity: int) -> tuple[str, str]:
    """Leaves ``owner`` holding two messages read ahead on one channel and a group copy for a
    second member: (the channel, the second member)."""
    channel = await _some_read_ahead(owner, other, 3)  # 1 and 2 read ahead
    first, second = [await owner.new_channel() for _ in range(2)]
    group = fresh("flushed")
    for member in (first, second):
        await owner.group_add(group, member)
    await other.group_send(group, {"n": "copy"})
    assert await owner.receive(first) == {"n": "copy"}  # second's copy held
    assert (await owner.statistics([channel, second])).channels[channel].waiting == 2
    return channel, second


async def _nothing_from_before_the_flush(owner, other, channel: str, second: str, capacity: int) -> None:
    for reader in (channel, second):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(owner.receive(reader), 0.3)
    for n in range(capacity):  # room is whole again: nothing held counts against it
        await owner.send(channel, {"n": f"fresh {n}"})
    with pytest.raises(ChannelFull):
        await other.send(channel, {"n": "one too many"})
    assert [await owner.receive(channel) for _ in range(capacity)] == [{"n": f"fresh {n}"} for n in range(capacity)]


def test_a_flush_by_another_layer_drops_what_this_one_read_ahead_or_held(redis_urls):
    """Whether the holding loop already listens for flushes (the flush waits for its answer) or
    not yet (its next receive reads the epoch first): nothing from before the flush comes out."""
    capacity = 5
    owner, other = _owner_and_other(redis_urls, capacity)

    async def body():
        channel, second = await _hold_some(owner, other, capacity)
        await other.flush()  # owner does not listen yet: it reads the epoch before serving
        await _nothing_from_before_the_flush(owner, other, channel, second, capacity)
        channel, second = await _hold_some(owner, other, capacity)
        assert await owner.receive(channel) == {"n": 1}  # served from what is held: owner listens
        await other.flush()  # returns once owner answered that it dropped what it held
        await _nothing_from_before_the_flush(owner, other, channel, second, capacity)
        await other.close()

    run(closing(owner, body()))


def test_an_uncount_lost_with_the_connection_is_made_on_the_next_one(redis_urls):
    owner, other = _owner_and_other(redis_urls, capacity=4)

    async def body():
        channel = await _some_read_ahead(owner, other, 4)  # 1, 2 and 3 read ahead, counted on the server
        assert await owner.receive(channel) == {"n": 1}  # from what is held: the loop listens for flushes
        raw(redis_urls[0]).client_kill_filter(_type="normal")  # command connections, not the bells
        assert await owner.receive(channel) == {"n": 2}  # its uncount is lost with the connection
        with contextlib.suppress(RedisConnectionError):  # the first command may meet the dead connection
            await owner.statistics([channel])
        await owner.statistics([channel])  # on a new connection: the uncount was made first
        for n in range(3):  # only n 3 counts
            await other.send(channel, {"n": f"fresh {n}"})
        with pytest.raises(ChannelFull):
            await other.send(channel, {"n": "one too many"})
        await other.close()

    run(closing(owner, body()))


def test_a_loop_that_was_not_running_during_a_flush_reads_the_epoch_before_serving(redis_urls):
    """A flush waits at most ACK_TIMEOUT for the answer of a loop that is not running, then
    returns; running again, that loop must not serve what it held before it knows the epoch."""
    capacity = 5
    owner, other = _owner_and_other(redis_urls, capacity)
    flusher = layer_on(redis_urls, capacity=capacity, prefix=PREFIX)  # in a thread with a loop of its own

    async def flush():
        await flusher.flush()
        await flusher.close()

    async def body():
        channel, second = await _hold_some(owner, other, capacity)
        assert await owner.receive(channel) == {"n": 1}  # from what is held: owner listens
        thread = threading.Thread(target=asyncio.run, args=(flush(),))
        thread.start()
        thread.join()  # owner's loop is blocked until the flush returned: it could not answer
        await _nothing_from_before_the_flush(owner, other, channel, second, capacity)
        await other.close()

    run(closing(owner, body()))


def test_receives_waiting_several_to_a_channel_each_get_a_message_of_their_own(redis_urls):
    # Their pops name the wanted queues and how many each one's receives want (5 and 3 here),
    # and read them once messages wait there (scripts.POP). Which of a channel's concurrent
    # receives gets which message, the spec leaves open.
    owner, other = _owner_and_other(redis_urls, capacity=100)

    async def body():
        busy, quiet = await owner.new_channel(), await owner.new_channel()
        waiting = {channel: [asyncio.ensure_future(owner.receive(channel)) for _ in range(count)]
                   for channel, count in ((busy, 5), (quiet, 3))}
        await asyncio.sleep(0)  # every receive is waiting
        for n in range(5):
            await other.send(busy, {"n": n})
            if n < 3:
                await other.send(quiet, {"n": n})
        for channel, receives in waiting.items():
            got = [(await asyncio.wait_for(receive, CALL_LIMIT))["n"] for receive in receives]
            assert sorted(got) == list(range(len(receives)))
        assert [stats.waiting for stats in (await owner.statistics([busy, quiet])).channels.values()] == [0, 0]
        await other.close()

    run(closing(owner, body()))
