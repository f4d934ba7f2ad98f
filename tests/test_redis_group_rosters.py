"""Our Redis layer keeps a group's members per process (scripts.py): a roster per process, so a
group_send's work on the server grows with the receiving processes, not with their members.

The spec must hold all the same, and these are its edge cases where the roster is kept apart
from the members: discards anywhere in a roster, each member's own expiry and renewal, a full
process missing the copies past its room (CAP-5, counted), memberships added and discarded by
other layer objects (XP-2), a discard racing a group_send, flush, and memberships an older
version listed one by one. Checked on a real server.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import CALL_LIMIT, closing, eventually, fresh, run
from tests.test_redis_group_copies import members_of, run_scenario
from tests.test_redis_layer import ClientCommands, layer_on, raw


async def copies_waiting(layer, channels: list[str]) -> dict[str, int]:
    """How many messages wait for each channel, read through statistics()."""
    table = (await layer.statistics(channels)).channels
    return {channel: table[channel].waiting for channel in channels}


async def only_these_got_one(layer, got: list[str], missed: list[str]) -> None:
    """Each of ``got`` has exactly one message waiting, none of ``missed`` has any."""
    waiting = await copies_waiting(layer, [*got, *missed])
    assert waiting == {**{channel: 1 for channel in got}, **{channel: 0 for channel in missed}}, waiting


async def scripts_work_of_a_group_send(layer, urls, group: str) -> list[str]:
    """The commands the server's scripts ran for one group_send."""
    with ClientCommands(urls, scripts=True) as seen:
        await layer.group_send(group, {"n": 1})
    return seen.commands[0]


def test_a_group_sends_work_on_the_server_does_not_grow_with_a_processs_members(redis_urls):
    """The group lists the process once, and the scripts run the same commands for 3 members
    as for 300 (no list of members is gone through one by one: the roster is read whole)."""
    async def scenario(layer, group):
        few, many = fresh("group"), fresh("group")
        await members_of(layer, few, 3)
        await members_of(layer, many, 300)
        await layer.group_add(many, fresh("normal"))
        await layer.group_add(few, fresh("normal"))
        server = raw(redis_urls[0])
        assert server.zcard(layer.keys.group_members(many)) == 2  # the process, the normal channel
        for each in (few, many):
            await layer.group_send(each, {"n": 0})  # scripts loaded, counters made
        assert await scripts_work_of_a_group_send(layer, redis_urls, many) == \
            await scripts_work_of_a_group_send(layer, redis_urls, few)

    run_scenario(redis_urls, scenario, capacity=1000)


@pytest.mark.parametrize("discarded", [[0], [2], [4], [0, 4], [1, 2, 3], [0, 1, 2, 3, 4]],
                         ids=["first", "middle", "last", "both-ends", "inner-three", "all"])
def test_a_discard_anywhere_in_a_processs_roster_leaves_exactly_the_others(redis_urls, discarded):
    async def scenario(layer, group):
        members = await members_of(layer, group, 5)
        for index in discarded:
            await layer.group_discard(group, members[index])
        await layer.group_send(group, {"n": 1})
        await only_these_got_one(layer, [m for i, m in enumerate(members) if i not in discarded],
                                 [members[i] for i in discarded])
        await layer.group_add(group, members[discarded[0]])  # back in, once
        await layer.group_send(group, {"n": 2})
        assert (await copies_waiting(layer, [members[discarded[0]]]))[members[discarded[0]]] == 1

    run_scenario(redis_urls, scenario)


def test_each_member_of_a_process_expires_on_its_own_and_re_adding_renews_it(redis_urls):
    async def scenario(layer, group):
        expiring, renewed = await members_of(layer, group, 2)
        added = time.monotonic()
        await eventually(lambda: time.monotonic() - added > 1.0, CALL_LIMIT, "a second to pass")
        await layer.group_add(group, renewed)
        await eventually(lambda: time.monotonic() - added > 2.1, CALL_LIMIT, "the first membership to expire")
        await layer.group_send(group, {"n": 1})
        await only_these_got_one(layer, [renewed], [expiring])
        await layer.group_add(group, expiring)  # expired, then added again: a member again
        await layer.group_send(group, {"n": 2})
        assert await copies_waiting(layer, [expiring, renewed]) == {expiring: 1, renewed: 2}

    run_scenario(redis_urls, scenario, group_expiry=2)


def test_a_process_whose_members_all_expired_leaves_no_key_behind(redis_urls):
    async def scenario(layer, group):
        await members_of(layer, group, 3)
        added = time.monotonic()
        await eventually(lambda: time.monotonic() - added > 1.1, CALL_LIMIT, "the memberships to expire")
        await layer.group_send(group, {"n": 1})  # finds them expired and drops them
        server = raw(redis_urls[0])
        assert not server.keys(f"{layer.prefix}:g*:{group}*")
        assert (await layer.statistics()).group_deliveries_missed == 0

    run_scenario(redis_urls, scenario, group_expiry=1)


def test_a_full_process_gets_copies_for_as_many_members_as_it_has_room_and_counts_the_rest(redis_urls):
    async def scenario(layer, group):
        members = await members_of(layer, group, 5)
        await layer.group_send(group, {"n": 1})  # raises nothing (CAP-5)
        waiting = await copies_waiting(layer, members)
        assert sorted(waiting.values()) == [0, 0, 1, 1, 1], waiting
        assert (await layer.statistics()).group_deliveries_missed == 2

    run_scenario(redis_urls, scenario, capacity=3)


def test_memberships_added_and_discarded_by_other_layer_objects_reach_this_ones_channels(redis_urls):
    prefix = fresh("p")[-10:]
    receiving, adding, sending = (layer_on(redis_urls, prefix=prefix) for _ in range(3))
    group = fresh("group")

    async def body():
        members = [await receiving.new_channel() for _ in range(3)]
        for member in members:
            await adding.group_add(group, member)
        await sending.group_discard(group, members[1])
        await sending.group_send(group, {"n": 1})
        assert [await asyncio.wait_for(receiving.receive(m), CALL_LIMIT) for m in (members[0], members[2])] == \
            [{"n": 1}] * 2
        await only_these_got_one(receiving, [], [members[1]])

    async def all_closed():
        try:
            await body()
        finally:
            for layer in (adding, sending):
                await layer.close()

    run(closing(receiving, all_closed()))


def test_a_discard_racing_a_group_send_gives_its_member_at_most_one_copy_and_the_others_one(redis_urls):
    async def scenario(layer, group):
        members = await members_of(layer, group, 20)
        for round_ in range(10):
            leaving = members[round_]
            await asyncio.gather(layer.group_send(group, {"n": round_}), layer.group_discard(group, leaving))
            waiting = await copies_waiting(layer, members)
            assert waiting[leaving] <= 1 and all(waiting[m] == 1 for m in members[round_ + 1:]), waiting
            for member in members[round_:]:
                while (await copies_waiting(layer, [member]))[member]:
                    await asyncio.wait_for(layer.receive(member), CALL_LIMIT)

    run_scenario(redis_urls, scenario)


def test_a_flush_deletes_every_roster(redis_urls):
    async def scenario(layer, group):
        members = await members_of(layer, group, 4)
        await layer.group_add(group, fresh("normal"))
        await layer.flush()
        assert not raw(redis_urls[0]).keys(f"{layer.prefix}:g*")  # the group, its capacities, rosters
        await layer.group_send(group, {"n": 1})
        await only_these_got_one(layer, [], members)

    run_scenario(redis_urls, scenario)


def test_members_an_older_version_listed_one_by_one_are_reached_and_moved_by_a_re_add(redis_urls):
    """Before the rosters, ``P:g:G`` held each ``p!x`` member itself (CHANGELOG.md)."""
    async def scenario(layer, group):
        old, new = await layer.new_channel(), await layer.new_channel()
        server = raw(redis_urls[0])
        seconds, _ = server.time()
        server.zadd(layer.keys.group_members(group), {old: (seconds + 3600) * 1000})
        server.hset(layer.keys.group_capacities(group), old, 100)
        await layer.group_add(group, new)
        await layer.group_send(group, {"n": 1})
        await only_these_got_one(layer, [old, new], [])
        await layer.group_add(group, old)  # now in the roster, and listed once
        await layer.group_send(group, {"n": 2})
        assert await copies_waiting(layer, [old, new]) == {old: 2, new: 2}
        assert server.zscore(layer.keys.group_members(group), old) is None

    run_scenario(redis_urls, scenario)


def test_every_key_of_a_group_expires_also_after_a_discard_rewrote_its_roster(redis_urls):
    async def scenario(layer, group):
        members = await members_of(layer, group, 3)
        await layer.group_discard(group, members[0])
        await layer.group_send(group, {"n": 1})  # writes the roster anew
        await layer.group_add(group, await layer.new_channel())
        server = raw(redis_urls[0])
        keys = server.keys(f"{layer.prefix}:g*:{group}*")
        assert len(keys) == 4 and all(0 < server.pttl(key) <= 301_000 for key in keys), \
            {key: server.pttl(key) for key in keys}

    run_scenario(redis_urls, scenario, group_expiry=300)
