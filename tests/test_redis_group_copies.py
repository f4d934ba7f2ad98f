"""Our Redis layer's group copies (copies.py): one per receiving process, fanned out inside it.

A group_send to a process's ``p!*`` members is one inbox entry for all of them; the process's
first pop takes it whole, and members reading after it find their copies without a round trip.
The spec must hold all the same: capacity shared by the process and counting the copies it
holds, no copy overtaking an older message of its member, expiry, statistics, and members in
other processes reached whatever their number. Checked on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from reference_layers.base import ChannelFull
from reference_layers.redis import ShardUnreachable
from tests.cuttable_proxy import CuttableProxy
from tests.helpers import CALL_LIMIT, closing, fresh, run
from tests.test_redis_layer import ClientCommands, layer_on, raw

QUIET = 0.3  # seconds a receive is given to show that nothing is there


async def members_of(layer, group: str, count: int) -> list[str]:
    channels = [await layer.new_channel() for _ in range(count)]
    for channel in channels:
        await layer.group_add(group, channel)
    return channels


async def holding_a_copy(layer, group: str, message: dict) -> tuple[str, str]:
    """Two members; ``message`` group_sent and received by the first, whose pop drained the
    inbox: the second's copy is now held by this process. Returns (first, second)."""
    first, second = await members_of(layer, group, 2)
    await layer.group_send(group, message)
    assert await layer.receive(first) == message
    return first, second


async def group_send_from_another_object(redis_urls, layer, group: str, message: dict) -> None:
    """``message`` group_sent by another layer object on ``layer``'s prefix: the entry stays in
    the inbox (the owner's own group_send pops it behind its script, own_groups.py)."""
    sender = layer_on(redis_urls, prefix=layer.prefix)
    await sender.group_send(group, message)
    await sender.close()


def run_scenario(redis_urls, scenario, **config) -> None:
    """``scenario(layer, group)`` on a layer of its own (``config``) and a fresh group."""
    layer = layer_on(redis_urls, **config)
    run(closing(layer, scenario(layer, fresh("group"))))


def test_a_group_send_to_a_processs_members_is_one_inbox_entry_whatever_their_number(redis_urls):
    async def scenario(layer, group):
        members = await members_of(layer, group, 50)
        await group_send_from_another_object(redis_urls, layer, group, {"n": 1})
        server = raw(redis_urls[0])
        inbox = layer.keys.inbox(layer.keys.capacity_key(members[0]))
        assert server.llen(inbox) == 1
        assert not any(server.exists(layer.keys.queue(member)) for member in members)
        for member in members:
            assert (await layer.receive(member))["n"] == 1

    run_scenario(redis_urls, scenario)


def test_members_reading_after_the_first_find_their_copies_without_a_round_trip(redis_urls):
    async def scenario(layer, group):
        first, *others = await members_of(layer, group, 20)
        await group_send_from_another_object(redis_urls, layer, group, {"n": 1})
        assert (await layer.receive(first))["n"] == 1  # its pop drains the process's inbox
        with ClientCommands(redis_urls) as seen:
            assert [(await layer.receive(member))["n"] for member in others] == [1] * len(others)
        # Once per loop and shard: listen for flushes, then read the flush epoch (flushes.py).
        assert seen.commands == [["SUBSCRIBE", "GET"]], seen.commands
        await group_send_from_another_object(redis_urls, layer, group, {"n": 2})
        assert (await layer.receive(first))["n"] == 2
        with ClientCommands(redis_urls) as seen:
            assert [(await layer.receive(member))["n"] for member in others] == [2] * len(others)
        assert seen.commands == [[]], seen.commands

    run_scenario(redis_urls, scenario)


def test_the_owners_group_send_brings_its_members_copies_back_with_it(redis_urls):
    async def scenario(layer, group):
        members = await members_of(layer, group, 20)
        await layer.group_send(group, {"n": 0})
        for member in members:  # once per loop and shard: listen for flushes (flushes.py)
            await layer.receive(member)
        await layer.group_send(group, {"n": 1})
        assert not raw(redis_urls[0]).exists(layer.keys.inbox(layer.keys.capacity_key(members[0])))
        with ClientCommands(redis_urls) as seen:
            assert [(await layer.receive(member))["n"] for member in members] == [1] * len(members)
        assert seen.commands == [[]], seen.commands
        await layer.group_discard(group, members[0])
        await layer.group_send(group, {"n": 2})
        assert [(await layer.receive(member))["n"] for member in members[1:]] == [2] * (len(members) - 1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(members[0]), QUIET)

    run_scenario(redis_urls, scenario)


def test_copies_held_by_the_process_count_against_its_capacity_until_received(redis_urls):
    async def scenario(layer, group):
        first, second = await holding_a_copy(layer, group, {"n": "copy"})
        sibling = await layer.new_channel()
        await layer.send(sibling, {"n": 1})
        await layer.send(sibling, {"n": 2})
        with pytest.raises(ChannelFull):
            await layer.send(sibling, {"n": 3})
        await layer.group_send(group, {"n": "missed"})  # no room: both miss it (CAP-5)
        assert (await layer.statistics()).group_deliveries_missed == 2
        assert (await layer.receive(second))["n"] == "copy"
        await layer.send(sibling, {"n": 3})  # the copy received freed its room
        assert [(await layer.receive(sibling))["n"] for _ in range(3)] == [1, 2, 3]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(second), QUIET)

    run_scenario(redis_urls, scenario, capacity=3)


def test_a_copy_never_overtakes_an_older_message_of_its_member(redis_urls):
    async def scenario(layer, group):
        first, second = await members_of(layer, group, 2)
        await layer.send(second, {"n": "older"})
        await layer.group_send(group, {"n": "copy"})
        await layer.send(second, {"n": "younger"})
        assert (await layer.receive(first))["n"] == "copy"  # drains the inbox, second's copy included
        assert [(await layer.receive(second))["n"] for _ in range(3)] == ["older", "copy", "younger"]

        await layer.group_send(group, {"n": "held"})
        await layer.send(second, {"n": "after"})
        assert (await layer.receive(first))["n"] == "held"  # second's copy is held here now
        assert [(await layer.receive(second))["n"] for _ in range(2)] == ["held", "after"]

    run_scenario(redis_urls, scenario)


def test_statistics_count_copies_in_the_inbox_and_held_by_the_process(redis_urls):
    async def scenario(layer, group):
        first, second = await members_of(layer, group, 2)
        await layer.group_send(group, {"n": 1})
        waiting = (await layer.statistics([first, second])).channels
        assert [waiting[first].waiting, waiting[second].waiting] == [1, 1]
        await layer.receive(first)
        waiting = (await layer.statistics([first, second])).channels
        assert [waiting[first].waiting, waiting[second].waiting] == [0, 1]
        assert waiting[second].oldest_age is not None
        assert second in (await layer.statistics()).channels

    run_scenario(redis_urls, scenario)


def test_a_held_copy_expires_like_any_message(redis_urls):
    async def scenario(layer, group):
        _, second = await holding_a_copy(layer, group, {"n": 1})
        await asyncio.sleep(1.2)  # waiting out expiry is the behaviour under test: no event to await
        assert (await layer.statistics([second])).channels[second].waiting == 0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(second), QUIET)
        await layer.send(second, {"n": 2})
        assert (await asyncio.wait_for(layer.receive(second), CALL_LIMIT))["n"] == 2

    run_scenario(redis_urls, scenario, expiry=1)


def test_a_flush_drops_the_copies_this_process_holds(redis_urls):
    async def scenario(layer, group):
        _, second = await holding_a_copy(layer, group, {"n": "stale"})
        await layer.flush()
        await layer.send(second, {"n": "fresh"})
        assert (await layer.receive(second))["n"] == "fresh"

    run_scenario(redis_urls, scenario)


def test_copies_a_loop_held_go_back_to_their_members_when_it_ends(redis_urls):
    """A loop ends with every asyncio.run (and async_to_sync call): the copies its pop took for
    members that had not received yet go back to their queues, before anything younger, counted
    there again (a sender in another process sees them), not lost with it."""
    layer = layer_on(redis_urls, capacity=3)
    other = layer_on(redis_urls, capacity=3, prefix=layer.prefix)
    group = fresh("group")

    async def first_loop() -> list[str]:
        members = await members_of(layer, group, 3)
        await layer.group_send(group, {"n": "copy"})
        assert (await layer.receive(members[0]))["n"] == "copy"  # the others' copies are held here
        return members

    members = run(first_loop())  # ends holding two copies

    async def second_loop() -> None:
        waiting = (await other.statistics(members[1:])).channels
        assert [waiting[member].waiting for member in members[1:]] == [1, 1]
        await other.send(members[1], {"n": "younger"})
        with pytest.raises(ChannelFull):  # the returned copies count: the process holds 3 of 3
            await other.send(members[2], {"n": "no room"})
        assert [(await layer.receive(members[1]))["n"] for _ in range(2)] == ["copy", "younger"]
        assert (await layer.receive(members[2]))["n"] == "copy"
        await other.close()

    run(closing(layer, second_loop()))


class Partition:
    """A proxy to a server, on a loop of its own thread so it outlives the test's loops."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.proxy = CuttableProxy(target_port)
        self.loop = asyncio.new_event_loop()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.proxy.port}"

    def cut_off(self) -> None:
        """The server out of reach: connections cut, new ones refused."""
        with socket.socket() as unused:  # a port nothing listens on: the proxy refuses through it
            unused.bind(("127.0.0.1", 0))
            self.proxy.target_port = unused.getsockname()[1]
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(CALL_LIMIT)

    async def _cut(self) -> None:
        self.proxy.cut()

    def heal(self) -> None:
        self.proxy.target_port = self.target_port


@contextlib.contextmanager
def partition(target_port: int) -> Iterator[Partition]:
    made = Partition(target_port)
    thread = threading.Thread(target=made.loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(made.proxy.__aenter__(), made.loop).result(CALL_LIMIT)
    try:
        yield made
    finally:
        asyncio.run_coroutine_threadsafe(made.proxy.__aexit__(None, None, None), made.loop).result(CALL_LIMIT)
        made.loop.call_soon_threadsafe(made.loop.stop)
        thread.join(CALL_LIMIT)
        made.loop.close()


async def out_of_reach(layer) -> None:
    """Until ``layer`` says its Redis is out of reach (ShardUnreachable). A call whose command had
    left as the connection was cut fails as a lost connection first."""
    for _ in range(3):
        try:
            await layer.send(fresh(), {"n": "nowhere"})
        except ShardUnreachable:
            return
        except RedisConnectionError:
            continue
    raise AssertionError("the layer did not find Redis out of reach")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def loop_ending_out_of_reach(cut: Partition, layer, message: dict) -> str:
    """A loop of ``layer`` that ends holding a member's copy of ``message``, Redis cut off as it
    ends (then healed). Returns that member."""
    async def first_loop() -> str:
        _, second = await holding_a_copy(layer, fresh("group"), message)
        cut.cut_off()
        await out_of_reach(layer)
        return second

    second = run(first_loop())
    cut.heal()
    return second


def test_copies_a_loop_held_go_to_the_next_loop_if_redis_was_out_of_reach_as_it_ended(redis_urls):
    """They cannot go back to Redis as the loop ends: the next loop of the layer object holds
    them, as if its own pop had taken them. They were lost with the loop before."""
    with partition(_port(redis_urls[0])) as cut:
        layer = layer_on([cut.url], reconnect_timeout=0.5)
        second = loop_ending_out_of_reach(cut, layer, {"n": "copy"})

        async def second_loop() -> None:
            assert (await layer.statistics([second])).channels[second].waiting == 1
            await layer.send(second, {"n": "younger"})
            assert [(await layer.receive(second))["n"] for _ in range(2)] == ["copy", "younger"]

        run(closing(layer, second_loop()))


def test_carried_copies_stay_gone_if_a_flush_came_before_the_next_loop(redis_urls):
    with partition(_port(redis_urls[0])) as cut:
        layer = layer_on([cut.url], reconnect_timeout=0.5)
        second = loop_ending_out_of_reach(cut, layer, {"n": "stale"})

        async def flush() -> None:
            flusher = layer_on(redis_urls, prefix=layer.prefix)
            await flusher.flush()
            await flusher.close()

        run(flush())

        async def second_loop() -> None:
            assert (await layer.statistics([second])).channels[second].waiting == 0
            await layer.send(second, {"n": "fresh"})
            assert (await layer.receive(second))["n"] == "fresh"

        run(closing(layer, second_loop()))


def test_copies_a_loop_held_stay_gone_if_a_flush_came_before_it_ended(redis_urls):
    layer = layer_on(redis_urls)
    flusher = layer_on(redis_urls, prefix=layer.prefix)
    group = fresh("group")

    async def first_loop() -> str:
        _, second = await holding_a_copy(layer, group, {"n": "stale"})
        await flusher.flush()
        await flusher.close()
        return second

    second = run(first_loop())

    async def second_loop() -> None:
        await layer.send(second, {"n": "fresh"})
        assert (await layer.receive(second))["n"] == "fresh"

    run(closing(layer, second_loop()))


def test_statistics_do_not_count_copies_a_flush_in_another_process_ended(redis_urls):
    """XP-4 as statistics() sees it: copies held here before another process's flush are
    neither served nor counted, whether or not this loop was listening for flushes then."""
    holder = layer_on(redis_urls)
    flusher = layer_on(redis_urls, prefix=holder.prefix)

    async def scenario(group):
        first, second = await members_of(holder, group, 2)
        for listening in (False, True):
            await flusher.group_send(group, {"n": "stale"})
            assert (await holder.receive(first))["n"] == "stale"  # second's copy is held here now
            if listening:
                assert (await holder.statistics([second])).channels[second].waiting == 1
            await flusher.flush()
            assert (await holder.statistics([second])).channels[second].waiting == 0
            await flusher.send(second, {"n": "fresh"})
            assert (await holder.receive(second))["n"] == "fresh"
            for member in (first, second):
                await holder.group_add(group, member)
        await flusher.close()

    run(closing(holder, scenario(fresh("group"))))


@pytest.mark.parametrize("pattern", ["waiting", "late"])
def test_members_in_other_processes_past_the_default_capacity_get_every_copy(redis_urls, pattern):
    """The bench's cross-process fan-out, small: 4 processes of 120 members, 3 group_sends."""
    from bench.layers import BY_NAME
    from bench.xfanout import cross_process_fanout

    contender = BY_NAME["redis"]
    config = {"hosts": list(redis_urls), "prefix": f"x{fresh('p')[-10:]}"}

    def make_layer(**overrides):
        return layer_on(redis_urls, prefix=config["prefix"], **overrides)

    # It raises unless every process reports every copy delivered to each of its members in time.
    figures = run(cross_process_fanout(make_layer, contender, config, 480, 3, pattern))
    assert figures["rate"] > 0 and figures["p50"] <= figures["p99"]


def test_an_inbox_entry_queued_without_its_count_is_read_and_uncounted_all_the_same(redis_urls):
    """An entry an older version queued says '<first id>', not '<first id>+<copies>': a pop still
    delivers every copy and gives back their room (its count found from the roster)."""
    async def scenario(layer, group):
        members = await members_of(layer, group, 3)
        await group_send_from_another_object(redis_urls, layer, group, {"n": 1})
        server = raw(redis_urls[0])
        key = layer.keys.capacity_key(members[0])
        inbox, count = layer.keys.inbox(key), layer.keys.count(key)
        expires, copies, rest = server.lpop(inbox).split(b":", 2)
        first, plus, n = copies.partition(b"+")
        assert (plus, n) == (b"+", b"3")
        server.rpush(inbox, b"%s:%s:%s" % (expires, first, rest))
        for member in members:
            assert (await layer.receive(member))["n"] == 1
        assert not server.exists(count + "|g", count + "|t")  # uncounted: the whole room is back

    run_scenario(redis_urls, scenario)
