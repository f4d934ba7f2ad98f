"""A group_send reaching a full process (CAP-4, CAP-5) on the layers that judge each member's
room in the sender (in-memory, IPC): once the process is found full at one capacity, its other
members at that capacity or less miss the copy at once, while a member allowed more by
``channel_capacity`` still gets it, whatever order the group's members come in."""

from __future__ import annotations

import asyncio

import pytest

from reference_layers.inmemory import InMemoryChannelLayer
from reference_layers.ipc import IPCChannelLayer
from tests.helpers import run

from .ipc_helpers import remove_segment, unique_prefix

SMALL, BIG = ("a", "b", "c"), ("big1", "big2", "big3")
CAPACITIES = {"capacity": 2, "channel_capacity": {"*!big*": 4}}


@pytest.fixture(params=["inmemory", "ipc"])
def layer(request):
    if request.param == "inmemory":
        yield InMemoryChannelLayer(**CAPACITIES)
        return
    prefix = unique_prefix()
    layer = IPCChannelLayer(prefix=prefix, **CAPACITIES)
    yield layer
    run(layer.close())
    remove_segment(prefix)


@pytest.mark.parametrize("joining", [SMALL + BIG, BIG + SMALL], ids=["small-first", "big-first"])
def test_a_full_process_misses_a_group_send_member_by_member_capacity(layer, joining):
    async def scenario():
        process = (await layer.new_channel()).partition("!")[0] + "!"
        for local in joining:
            await layer.group_add("room", process + local)
        for n in range(2):
            await layer.send(process + "other", {"type": "t", "n": n})  # the process holds 2
        await layer.group_send("room", {"type": "t", "n": "copy"})
        stats = await layer.statistics([process + local for local in joining])
        waiting = {local: stats.channels[process + local].waiting for local in joining}
        return stats.group_deliveries_missed, waiting

    missed, waiting = run(scenario())
    assert [waiting[local] for local in SMALL] == [0, 0, 0]  # full for them at 2
    assert sorted(waiting[local] for local in BIG) == [0, 1, 1]  # room for two under 4
    assert missed == 4  # the three small ones, and the big one past 4


@pytest.mark.parametrize("kind", ["inmemory", "ipc"])
def test_a_process_full_of_expired_messages_gets_the_group_send(kind):
    """EXP: expired messages hold no room. The sender finds the process full, drops what expired
    and delivers; a process still full of live messages misses the copy without that work."""
    prefix = unique_prefix()
    layer = InMemoryChannelLayer(capacity=2, expiry=0.3) if kind == "inmemory" else \
        IPCChannelLayer(prefix=prefix, capacity=2, expiry=0.3)

    async def scenario():
        process = (await layer.new_channel()).partition("!")[0] + "!"
        await layer.group_add("room", process + "member")
        for n in range(2):
            await layer.send(process + "other", {"type": "t", "n": n})  # the process holds 2
        await layer.group_send("room", {"type": "t", "n": "missed"})
        await asyncio.sleep(0.4)  # waiting out expiry is the behaviour under test: no event to await
        await layer.group_send("room", {"type": "t", "n": "delivered"})
        got = await asyncio.wait_for(layer.receive(process + "member"), 2)
        return (await layer.statistics()).group_deliveries_missed, got

    try:
        assert run(scenario()) == (1, {"type": "t", "n": "delivered"})
    finally:
        run(layer.close())
        if kind == "ipc":
            remove_segment(prefix)
