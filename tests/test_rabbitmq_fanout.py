"""RabbitMQ group_send to a process's own members: one copy per process, fanned out inside it.

Checks the broker holds no forwarding queue for such members, that members waiting and
members receiving one after another all get every copy in order, that the process's shared
capacity decides who misses (CAP-4, CAP-5, counted), also for group_sends started
together, and that a membership added by another
layer object still goes through a forwarding queue (XP-2).
"""

from __future__ import annotations

import asyncio
import threading

import pika
import pika.exceptions
import pytest

from reference_layers.base import ChannelFull
from reference_layers.rabbitmq import RabbitMQChannelLayer
from tests.helpers import GENEROUS, eventually, fresh, run

MEMBERS = 200


def _queue_exists(url: str, queue: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


async def _room(layer: RabbitMQChannelLayer) -> tuple[str, list[str]]:
    """A fresh group and MEMBERS new channels of ``layer``, each added to it."""
    group = fresh("room")
    channels = [await layer.new_channel() for _ in range(MEMBERS)]
    for channel in channels:
        await layer.group_add(group, channel)
    return group, channels


def test_waiting_and_late_members_get_every_copy_in_order_through_one_copies_queue(rabbitmq_url):
    """CAP-4/GRP-1: the members' queue gets one copy per group_send, no forwarding queue."""
    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=3 * MEMBERS)
        group, channels = await _room(layer)
        waiting = [asyncio.ensure_future(layer.receive(channel)) for channel in channels]
        await layer.group_send(group, {"type": "room.message", "n": 0})
        got = await asyncio.wait_for(asyncio.gather(*waiting), GENEROUS)
        assert [message["n"] for message in got] == [0] * MEMBERS
        await layer.group_send(group, {"type": "room.message", "n": 1})
        await layer.group_send(group, {"type": "room.message", "n": 2})
        for channel in reversed(channels):  # late: one after another, after the sends
            assert (await layer.receive(channel))["n"] == 1
            assert (await layer.receive(channel))["n"] == 2
        names = layer._names
        forwarding = _queue_exists(rabbitmq_url, names.membership(group, channels[0]))
        copies = _queue_exists(rabbitmq_url, names.group_copies(names.queue(channels[0])))
        await layer.flush()
        await layer.close()
        return forwarding, copies

    forwarding, copies = run(scenario())
    assert not forwarding, "an own member still got a forwarding queue"
    assert copies


def test_the_process_capacity_decides_who_misses_and_the_miss_is_counted(rabbitmq_url):
    """CAP-4/CAP-5: room for one of two members; the next send is refused; one miss counted."""
    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=3)
        group = fresh("full")
        first = await layer.new_channel()
        second = first[:first.index("!") + 1] + "sibling"
        await layer.group_add(group, first)
        await layer.group_add(group, second)
        await layer.send(first, {"type": "direct", "n": 0})
        await layer.send(second, {"type": "direct", "n": 1})
        await layer.group_send(group, {"type": "group"})  # one slot left for two members
        with pytest.raises(ChannelFull):
            await layer.send(first, {"type": "direct", "n": 2})
        got = [await layer.receive(first), await layer.receive(second)]
        extra = []
        for channel in (first, second):
            try:
                extra.append(await asyncio.wait_for(layer.receive(channel), 0.3))
            except asyncio.TimeoutError:
                pass
        missed = (await layer.statistics([])).group_deliveries_missed
        await layer.flush()
        await layer.close()
        return got, extra, missed

    got, extra, missed = run(scenario())
    assert [message["type"] for message in got] == ["direct", "direct"]
    assert [message["type"] for message in extra] == ["group"]
    assert missed == 1


def test_concurrent_group_sends_fill_the_process_capacity_exactly_in_order(rabbitmq_url):
    """CAP-4/CAP-5: group_sends started together (the first drains the process queue with
    its publish, the others while that drain still runs) place copies in send order until
    the shared capacity is reached; the rest are missed and counted."""
    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=4)
        group = fresh("together")
        member = await layer.new_channel()
        await layer.group_add(group, member)
        await layer.send(member, {"type": "direct"})
        await asyncio.wait_for(asyncio.gather(*(layer.group_send(group, {"type": "group", "n": n})
                                                for n in range(6))), GENEROUS)
        got = [await asyncio.wait_for(layer.receive(member), GENEROUS) for _ in range(4)]
        try:
            extra = await asyncio.wait_for(layer.receive(member), 0.3)
        except asyncio.TimeoutError:
            extra = None
        missed = (await layer.statistics([])).group_deliveries_missed
        await layer.flush()
        await layer.close()
        return got, extra, missed

    got, extra, missed = run(scenario())
    assert [message.get("n") for message in got] == [None, 0, 1, 2], got
    assert extra is None
    assert missed == 3


def test_a_member_added_by_another_layer_object_still_gets_its_copy(rabbitmq_url):
    """XP-2: another object adds this object's channel; the owner's book does not know it."""
    async def scenario():
        owner = RabbitMQChannelLayer(url=rabbitmq_url)
        other = RabbitMQChannelLayer(url=rabbitmq_url)
        group = fresh("xp")
        mine, theirs = await owner.new_channel(), await owner.new_channel()
        await owner.group_add(group, mine)
        await other.group_add(group, theirs)
        await other.group_send(group, {"type": "from.other"})
        got = await asyncio.wait_for(asyncio.gather(owner.receive(mine), owner.receive(theirs)), GENEROUS)
        await owner.group_discard(group, mine)
        await other.group_send(group, {"type": "second"})
        second = await asyncio.wait_for(owner.receive(theirs), GENEROUS)
        try:
            stray = await asyncio.wait_for(owner.receive(mine), 0.3)
        except asyncio.TimeoutError:
            stray = None
        await owner.flush()
        await other.close()
        await owner.close()
        return got, second, stray

    got, second, stray = run(scenario())
    assert [message["type"] for message in got] == ["from.other", "from.other"]
    assert second["type"] == "second"
    assert stray is None


def test_members_waiting_for_copies_start_no_consumer_each_on_their_process_queue(rabbitmq_url, monkeypatch):
    """Receives waiting for group copies, which come through the copies queue, must not make
    the layer consume its process queue once per receive, nor cancel and start those
    consumers again each time a copy wakes the members: the broker works through every such
    command before it delivers the next copy (32 of each per group_send, before)."""
    import pika.channel

    sent: list[str] = []
    send_method = pika.channel.Channel._send_method

    def counting(self, method, content=None):
        sent.append(method.NAME)
        return send_method(self, method, content)

    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=10 * MEMBERS)
        group, channels = await _room(layer)

        async def member(channel):
            return [(await layer.receive(channel))["n"] for _ in range(5)]

        monkeypatch.setattr(pika.channel.Channel, "_send_method", counting)
        members = [asyncio.ensure_future(member(channel)) for channel in channels]
        for n in range(5):
            await layer.group_send(group, {"type": "room.message", "n": n})
        got = await asyncio.wait_for(asyncio.gather(*members), GENEROUS)
        monkeypatch.undo()
        await layer.flush()
        await layer.close()
        return got

    got = run(scenario())
    assert got == [[0, 1, 2, 3, 4]] * MEMBERS
    assert sent.count("Basic.Consume") <= 2, sent.count("Basic.Consume")
    assert sent.count("Basic.Cancel") <= 2, sent.count("Basic.Cancel")


def test_a_flush_ends_memberships_added_on_a_loop_that_ended_meanwhile(rabbitmq_url):
    """XP-4: async_to_sync runs each call on a loop of its own. A flush by another object
    deletes the copies queue while no loop of the owner listens (no basic.cancel reaches its
    book): the next loop that connects must see the flush, not declare and bind it again."""
    owner = RabbitMQChannelLayer(url=rabbitmq_url)
    other = RabbitMQChannelLayer(url=rabbitmq_url)
    group = fresh("gone")

    async def join():
        member = await owner.new_channel()
        await owner.group_add(group, member)
        return member

    async def later(member):
        await owner.send(fresh("wake"), {"type": "wake"})  # this loop connects after the flush
        await other.group_send(group, {"type": "stale"})
        await other.send(member, {"type": "fresh"})
        got = await asyncio.wait_for(owner.receive(member), GENEROUS)
        try:
            stray = await asyncio.wait_for(owner.receive(member), 0.3)
        except asyncio.TimeoutError:
            stray = None
        await other.flush()
        await other.close()
        await owner.close()
        return got, stray

    member = run(join())
    run(other.flush())
    got, stray = run(later(member))
    assert got == {"type": "fresh"}, f"group membership survived a flush: got {got!r}"
    assert stray is None, f"group membership survived a flush: got {stray!r}"


async def _holding_copies(layer: RabbitMQChannelLayer, group: str, count: int) -> list[str]:
    """``count`` members; one group_send received by the first: the others' copies are held by
    this loop (fanned out, acked: the broker no longer has them)."""
    members = [await layer.new_channel() for _ in range(count)]
    for member in members:
        await layer.group_add(group, member)
    await layer.group_send(group, {"type": "copy"})
    assert await asyncio.wait_for(layer.receive(members[0]), GENEROUS) == {"type": "copy"}
    return members


def test_copies_a_loop_held_go_to_the_objects_next_loop_in_order_and_counted(rabbitmq_url):
    """A loop ends with every asyncio.run and async_to_sync call: the copies it held for members
    that had not received yet are the layer object's next loop's, before anything younger, and
    take room there (CAP-4), not lost with the loop."""
    layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=4)
    group = fresh("room")
    members = run(_holding_copies(layer, group, 3))  # the loop ends holding two copies

    async def next_loop():
        await layer.send(members[1], {"type": "younger"})
        await layer.send(members[2], {"type": "younger"})  # the process holds 4 of 4 now
        with pytest.raises(ChannelFull):
            await layer.send(members[2], {"type": "no room"})
        got = [await asyncio.wait_for(layer.receive(member), GENEROUS) for member in members[1:] for _ in range(2)]
        await layer.flush()
        await layer.close()
        return got

    assert run(next_loop()) == [{"type": "copy"}, {"type": "younger"}] * 2


@pytest.mark.parametrize("flusher", ["same object", "another object"])
def test_copies_a_loop_held_stay_gone_after_a_flush_before_the_next_loop(rabbitmq_url, flusher):
    """FLUSH-1 and XP-4: held copies are gone once a flush returns, whoever flushed while no
    loop of the holder ran."""
    layer = RabbitMQChannelLayer(url=rabbitmq_url)
    other = layer if flusher == "same object" else RabbitMQChannelLayer(url=rabbitmq_url)
    members = run(_holding_copies(layer, fresh("room"), 2))
    run(other.flush())

    async def next_loop():
        await layer.send(members[1], {"type": "fresh"})
        got = await asyncio.wait_for(layer.receive(members[1]), GENEROUS)
        await layer.close()
        await other.close()
        return got

    assert run(next_loop()) == {"type": "fresh"}


@pytest.mark.parametrize("flushed", [False, True])
def test_copies_a_loop_held_go_to_a_loop_that_lives_on_beside_it(rabbitmq_url, flushed):
    """async_to_sync runs a call on a loop of its own while the server's loop lives on, connected
    (no connect for it to take them on at): its next receive takes on what the ended loop held,
    unless a flush (here by another object) came between."""
    layer = RabbitMQChannelLayer(url=rabbitmq_url)
    other = RabbitMQChannelLayer(url=rabbitmq_url)

    async def live_loop():
        probe = await layer.new_channel()
        await layer.send(probe, {"type": "connect"})
        assert await asyncio.wait_for(layer.receive(probe), GENEROUS) == {"type": "connect"}
        members = await asyncio.to_thread(asyncio.run, _holding_copies(layer, fresh("room"), 3))
        if flushed:
            await other.flush()
            await layer.send(members[1], {"type": "fresh"})
        got = [await asyncio.wait_for(layer.receive(member), GENEROUS) for member in members[1:2 if flushed else 3]]
        await layer.flush()
        await layer.close()
        await other.close()
        return got

    assert run(live_loop()) == ([{"type": "fresh"}] if flushed else [{"type": "copy"}] * 2)


def _ready_in(url: str, queue: str) -> int:
    """Messages the broker has not handed to a consumer yet in ``queue``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_a_copy_placed_in_the_read_that_brings_it_never_overtakes_an_earlier_copy(rabbitmq_url, holding_loop):
    """GRP order: a group_send's copy is placed at once when it comes with the reply to its
    drain-ahead get. Here another object's copy reaches the owner's socket while the owner's
    loop is held, and the owner's own group_send, called next, sends its get before that copy
    is read: the earlier copy waits for the get in a task, and the owner's copy must not be
    placed before it. (The broker sends a consumer one delivery at a time; with a wider
    window this fails.)"""
    async def scenario():
        owner, other = RabbitMQChannelLayer(url=rabbitmq_url), RabbitMQChannelLayer(url=rabbitmq_url)
        group = fresh("order")
        member = await holding_loop.run(owner.new_channel())
        await holding_loop.run(owner.group_add(group, member))
        copies = owner._names.group_copies(owner._names.queue(member))
        held, release = threading.Event(), threading.Event()

        async def held_then_group_send() -> None:
            held.set()
            release.wait(GENEROUS)  # blocks the loop: the other's copy stays unread in its socket
            await owner.group_send(group, {"type": "room.message", "n": 2})  # its get goes out first

        sending = holding_loop.submit(held_then_group_send())
        try:
            await asyncio.to_thread(held.wait, GENEROUS)
            await other.group_send(group, {"type": "room.message", "n": 1})
            await eventually(lambda: _ready_in(rabbitmq_url, copies) == 0, what="the copy handed to the owner's consumer")
        finally:
            release.set()
        await asyncio.wrap_future(sending)
        got = [(await holding_loop.run(owner.receive(member)))["n"] for _ in range(2)]
        await holding_loop.run(owner.flush())
        await holding_loop.run(owner.close())
        await other.close()
        return got

    assert run(scenario()) == [1, 2]
