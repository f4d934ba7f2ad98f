"""Our Redis layer's deliveries (deliveries.py): a group_send's entry handed in one hop to the loop
where a receive of the process waits, instead of an inbox entry its bell makes the loop pop.

The spec must hold the same as on the inbox path: no copy overtaking an older message of its
member, capacity counted exactly once the copies are read, a loop that stops reading sent no more
than its credit, flushes in other processes, copies held by a loop that ends going back to Redis,
and one copy per member even with several loops.
Checked on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator

import pytest

from reference_layers.base import ChannelFull
from reference_layers.redis import deliveries
from reference_layers.redis.deliveries import Claims
from reference_layers.redis.group_scripts import DELIVERY_CREDIT
from tests.helpers import CALL_LIMIT, closing, eventually, fresh, run
from tests.test_redis_group_copies import QUIET, _port, members_of, partition
from tests.test_redis_layer import ClientCommands, layer_on, raw


def takers_of(server, layer, member: str) -> int:
    """Loops subscribed to the deliveries of ``member``'s process, as the server counts them."""
    return server.pubsub_numsub(layer.keys.taker(layer.keys.capacity_key(member)))[0][1]


async def receive_waiting(layer, server, member: str) -> asyncio.Future:
    """A receive of ``member``, waiting once its loop takes the process's deliveries."""
    receive = asyncio.ensure_future(layer.receive(member))
    await eventually(lambda: takers_of(server, layer, member) == 1, CALL_LIMIT, "the loop never took deliveries")
    return receive


async def two_members_the_first_waiting(layer, server, group: str) -> tuple[str, str, asyncio.Future]:
    """Two members of ``group`` in ``layer``'s process, and a receive of the first waiting there:
    (first, second, that receive)."""
    first, second = await members_of(layer, group, 2)
    return first, second, await receive_waiting(layer, server, first)


async def delivered_once_then_left(receiving, sending, server, group: str) -> tuple[str, str]:
    """Two members of ``group`` in ``receiving``'s process: a group_send delivered to the first's
    waiting receive, then its loop no longer taking (``LINGER`` made short). (first, second)"""
    first, second, receive = await two_members_the_first_waiting(receiving, server, group)
    await sending.group_send(group, {"n": 1})
    assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 1
    await eventually(lambda: takers_of(server, receiving, first) == 0, CALL_LIMIT, "the loop still takes")
    return first, second


@contextlib.contextmanager
def in_one_hop(redis_urls) -> Iterator[ClientCommands]:
    """The group_sends of the block reach their process published, never by its inbox."""
    with ClientCommands(redis_urls, scripts=True) as done_by_scripts:
        yield done_by_scripts
    assert "PUBLISH" in done_by_scripts.commands[0]
    assert "RPUSH" not in done_by_scripts.commands[0]  # no inbox entry


def run_pair(redis_urls, scenario, **config) -> None:
    """``scenario(receiving, sending, group)``: two layer objects on one prefix (two processes)."""
    receiving = layer_on(redis_urls, **config)
    sending = layer_on(redis_urls, prefix=receiving.prefix, **config)

    async def both():
        try:
            await scenario(receiving, sending, fresh("group"))
        finally:
            await sending.close()

    run(closing(receiving, both()))


def test_a_group_send_reaches_the_loop_where_a_receive_waits_in_one_hop_never_by_its_inbox(redis_urls):
    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, *others = await members_of(receiving, group, 5)
        receive = await receive_waiting(receiving, server, first)
        with in_one_hop(redis_urls) as done_by_scripts:
            await sending.group_send(group, {"n": 1})
            assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 1
            assert [(await receiving.receive(member))["n"] for member in others] == [1] * len(others)
        assert "LPOP" not in done_by_scripts.commands[0]  # so no pop of an entry either

    run_pair(redis_urls, scenario)


def test_a_member_gets_its_older_message_before_a_group_copy_though_its_process_takes_deliveries(redis_urls):
    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, second, receive = await two_members_the_first_waiting(receiving, server, group)
        await sending.send(second, {"n": "older"})
        await sending.group_send(group, {"n": "group"})
        assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == "group"
        assert [(await receiving.receive(second))["n"] for _ in range(2)] == ["older", "group"]

    run_pair(redis_urls, scenario)


def test_a_loops_own_group_send_to_members_it_takes_goes_by_the_inbox_popped_behind_its_script(redis_urls):
    """Its pop rides behind the script on the same connection, one hop: a delivery to itself would
    come on the other connection, later."""
    async def scenario(layer, group):
        server = raw(redis_urls[0])
        first, second, receive = await two_members_the_first_waiting(layer, server, group)
        listener = server.pubsub()
        listener.subscribe(layer.keys.taker(layer.keys.capacity_key(first)))
        assert listener.get_message(timeout=CALL_LIMIT)["type"] == "subscribe"
        await layer.group_send(group, {"n": 1})
        assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 1
        assert (await layer.receive(second))["n"] == 1
        assert listener.get_message(timeout=QUIET) is None  # nothing was published to the taker
        listener.close()

    layer = layer_on(redis_urls)
    run(closing(layer, scenario(layer, fresh("group"))))


def test_the_copies_of_a_delivered_entry_take_no_room_on_the_server_once_read(redis_urls):
    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, second, receive = await two_members_the_first_waiting(receiving, server, group)
        await sending.group_send(group, {"n": 1})
        await asyncio.wait_for(receive, CALL_LIMIT)
        await receiving.receive(second)
        for n in range(3):  # the whole capacity, as if the copies had never been there
            await sending.send(first, {"n": n})
        with pytest.raises(ChannelFull):
            await sending.send(first, {"n": 3})

    run_pair(redis_urls, scenario, capacity=3)


def test_a_loop_that_stops_reading_is_sent_its_credit_then_group_copies_queue_in_its_inbox_counted(
        redis_urls, monkeypatch):
    """Delivered copies are not counted on the server: the credit bounds what a loop that stopped
    reading its socket is sent. Here the "loop" is a subscriber that never reads."""
    monkeypatch.setattr(deliveries, "LINGER", 0.05)

    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        member, other, receive = await two_members_the_first_waiting(receiving, server, group)
        receive.cancel()  # the process's own loop stops taking
        await eventually(lambda: takers_of(server, receiving, member) == 0, CALL_LIMIT, "the loop still takes")
        stalled = server.pubsub()
        stalled.subscribe(receiving.keys.taker(receiving.keys.capacity_key(member)))
        assert stalled.get_message(timeout=CALL_LIMIT)["type"] == "subscribe"
        for n in range(DELIVERY_CREDIT + 3):  # the credit, then the capacity (4: two to both), one missed
            await sending.group_send(group, {"n": n})
        published = [stalled.get_message(timeout=CALL_LIMIT) for _ in range(DELIVERY_CREDIT)]
        assert all(message["type"] == "message" for message in published)
        assert stalled.get_message(timeout=QUIET) is None
        stalled.close()
        for channel in (member, other):
            received = [(await asyncio.wait_for(receiving.receive(channel), CALL_LIMIT))["n"] for _ in range(2)]
            assert received == [DELIVERY_CREDIT, DELIVERY_CREDIT + 1]
        with pytest.raises(asyncio.TimeoutError):  # the last found the process full (CAP-5)
            await asyncio.wait_for(receiving.receive(member), QUIET)

    run_pair(redis_urls, scenario, capacity=4)


def test_a_loop_that_reads_its_deliveries_renews_its_credit_so_they_keep_coming_in_one_hop(redis_urls):
    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, second, receive = await two_members_the_first_waiting(receiving, server, group)
        with in_one_hop(redis_urls) as done_by_scripts:
            for n in range(3 * DELIVERY_CREDIT):
                await sending.group_send(group, {"n": n})
                assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == n
                assert (await receiving.receive(second))["n"] == n
                receive = asyncio.ensure_future(receiving.receive(first))
        assert done_by_scripts.commands[0].count("PUBLISH") >= 3 * DELIVERY_CREDIT
        receive.cancel()

    run_pair(redis_urls, scenario)


def test_a_loop_that_takes_again_renews_a_credit_an_earlier_subscription_spent(redis_urls, monkeypatch):
    monkeypatch.setattr(deliveries, "LINGER", 0.05)

    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, _ = await delivered_once_then_left(receiving, sending, server, group)
        server.set(receiving.keys.taker_credit(receiving.keys.capacity_key(first)), 0)  # spent
        receive = await receive_waiting(receiving, server, first)
        await receiving.statistics([first])  # behind the renewal on the same connection
        with in_one_hop(redis_urls):
            await sending.group_send(group, {"n": 2})
            assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 2

    run_pair(redis_urls, scenario)


def test_after_a_flush_took_its_credit_a_loop_still_takes_deliveries_in_one_hop(redis_urls):
    """A flush deletes every key of the prefix, the credit's count too: none is a whole credit."""
    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, second, receive = await two_members_the_first_waiting(receiving, server, group)
        await sending.group_send(group, {"n": 1})
        assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 1
        assert (await receiving.receive(second))["n"] == 1
        receive = asyncio.ensure_future(receiving.receive(first))
        await sending.flush()
        await sending.group_add(group, first)  # the flush took the memberships too
        await sending.group_add(group, second)
        assert not server.exists(receiving.keys.taker_credit(receiving.keys.capacity_key(first)))
        with in_one_hop(redis_urls):
            await sending.group_send(group, {"n": 2})
            assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 2
            assert (await receiving.receive(second))["n"] == 2

    run_pair(redis_urls, scenario)


def test_a_flush_in_another_process_drops_the_copies_a_delivery_left_held(redis_urls):
    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, second, receive = await two_members_the_first_waiting(receiving, server, group)
        await sending.group_send(group, {"n": "before the flush"})
        await asyncio.wait_for(receive, CALL_LIMIT)
        await sending.flush()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receiving.receive(second), QUIET)
        await sending.send(second, {"n": "after the flush"})
        assert (await asyncio.wait_for(receiving.receive(second), CALL_LIMIT))["n"] == "after the flush"

    run_pair(redis_urls, scenario)


def test_copies_a_delivery_left_held_go_back_to_redis_when_their_loop_ends(redis_urls):
    receiving = layer_on(redis_urls)
    sending = layer_on(redis_urls, prefix=receiving.prefix)
    group = fresh("group")
    server = raw(redis_urls[0])

    async def first_loop() -> list[str]:
        members = await members_of(receiving, group, 3)
        receive = await receive_waiting(receiving, server, members[0])
        await sending.group_send(group, {"n": 1})
        await asyncio.wait_for(receive, CALL_LIMIT)
        await sending.close()
        return members  # the loop ends holding the others' copies

    async def second_loop(members: list[str]) -> list[int]:
        assert takers_of(server, receiving, members[0]) == 0  # it left before its loop closed
        return [(await receiving.receive(member))["n"] for member in members[1:]]

    members = run(first_loop())
    assert run(closing(receiving, second_loop(members))) == [1, 1]


def test_a_loop_where_no_receive_waits_stops_taking_deliveries_after_a_while(redis_urls, monkeypatch):
    monkeypatch.setattr(deliveries, "LINGER", 0.05)

    async def scenario(receiving, sending, group):
        server = raw(redis_urls[0])
        first, second = await delivered_once_then_left(receiving, sending, server, group)
        await sending.group_send(group, {"n": 2})  # to the inbox, as no loop takes
        assert [(await receiving.receive(second))["n"] for _ in range(2)] == [1, 2]
        assert (await receiving.receive(first))["n"] == 2

    run_pair(redis_urls, scenario)


def test_one_loop_at_a_time_takes_a_process_keys_deliveries():
    claims = Claims()
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert claims.claim("specific.p!", first)
        assert claims.claim("specific.p!", first)  # again, by the same loop
        assert not claims.claim("specific.p!", second)
        assert claims.claim("specific.q!", second)  # another key is another claim
        claims.release("specific.p!", second)  # not its to release
        assert not claims.claim("specific.p!", second)
        claims.release("specific.p!", first)
        assert claims.claim("specific.p!", second)
    finally:
        second.close()
    assert claims.claim("specific.p!", first)  # the holder's loop is closed: it took none since
    first.close()


def test_with_two_loops_of_one_layer_object_receiving_each_member_gets_one_copy(redis_urls):
    """One loop takes the process's deliveries, and holds the copy of a member whose receive
    waits on the other loop; closing, it gives that copy back to Redis, where the other pops it."""
    receiving = layer_on(redis_urls)
    sending = layer_on(redis_urls, prefix=receiving.prefix)
    group = fresh("group")
    server = raw(redis_urls[0])

    async def in_another_loop(member: str) -> dict:
        return await asyncio.wait_for(receiving.receive(member), CALL_LIMIT)

    async def scenario():
        first, second, receive = await two_members_the_first_waiting(receiving, server, group)
        other = asyncio.ensure_future(asyncio.to_thread(run, in_another_loop(second)))
        await sending.group_send(group, {"n": 1})
        assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 1
        assert takers_of(server, receiving, first) == 1  # the other loop never took as well
        await receiving.close()  # this loop's state: the copy it holds for the other goes back
        assert (await asyncio.wait_for(other, CALL_LIMIT))["n"] == 1
        await sending.flush()
        await sending.close()

    run(scenario())


def test_a_subscription_lost_with_its_connection_leaves_group_sends_to_the_inbox_until_a_receive_takes_again(
        redis_urls):
    """Nothing is published to a loop that stopped listening: its receiver, connected again,
    pops the entry its bell rang for; the next receive that waits subscribes again."""
    with partition(_port(redis_urls[0])) as cut:
        receiving = layer_on([cut.url])
        sending = layer_on(redis_urls, prefix=receiving.prefix)
        server = raw(redis_urls[0])

        async def scenario(group):
            first, second, receive = await two_members_the_first_waiting(receiving, server, group)
            cut.cut_off()
            cut.heal()  # the connections are gone; new ones reach the server
            await eventually(lambda: takers_of(server, receiving, first) == 0, CALL_LIMIT, "still subscribed")
            await sending.group_send(group, {"n": 1})
            assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 1
            assert (await receiving.receive(second))["n"] == 1
            receive = await receive_waiting(receiving, server, first)  # taking again
            await sending.group_send(group, {"n": 2})
            assert (await asyncio.wait_for(receive, CALL_LIMIT))["n"] == 2
            assert (await receiving.receive(second))["n"] == 2
            await sending.close()

        run(closing(receiving, scenario(fresh("group"))))
