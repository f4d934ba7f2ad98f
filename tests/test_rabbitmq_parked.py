"""ParkedMessages and placing.py: a queue's parked deliveries, each taken by its channel at once and oldest
first per channel, in whatever order a late fan-out's members come for theirs. No broker needed."""

from __future__ import annotations

import asyncio

from reference_layers.rabbitmq.parked import ParkedMessages
from reference_layers.rabbitmq.placing import place_copy, serve_acked
from reference_layers.rabbitmq.queue_state import Parked, QueueState, acked, unacked


def park(body: bytes, tag: int | None = None) -> Parked:
    return Parked(body, tag, None, 0.0)


def test_each_channel_takes_its_oldest_first_in_any_order_of_channels():
    copy = park(b"copy")
    parked = ParkedMessages((f"p!{n}", copy) for n in range(1000))
    parked.park("p!7", park(b"later"))
    taken = [parked.unpark(f"p!{n}") for n in reversed(range(1000))]
    assert all(entry is copy for entry in taken)
    assert [entry.body for entry in parked] == [b"later"]  # p!7's younger one waits on
    assert len(parked) == 1 and parked.count("p!7") == 1 and parked.unpark("p!8") is None
    assert parked.unpark("p!7").body == b"later"
    assert not parked and parked.oldest_channel() is None and list(parked) == []


def test_one_group_copy_is_one_entry_parked_for_each_member_behind_what_each_holds():
    parked = ParkedMessages([("p!b", park(b"older"))])
    copy = park(b"copy")
    parked.park_each(["p!a", "p!b", "p!c"], copy)
    assert len(parked) == 4 and list(parked.items())[:1] == [("p!b", parked.first["p!b"])]
    assert [entry.body for entry in parked.of("p!b")] == [b"older", b"copy"]
    assert parked.unpark("p!a") is copy and parked.unpark("p!c") is copy
    assert [parked.unpark("p!b").body, parked.unpark("p!b").body, parked.unpark("p!b")] == [b"older", b"copy", None]
    parked.park_each(["p!a", "p!b"], copy)  # none holds anything: the one-step path
    assert [channel for channel, _ in parked.items()] == ["p!a", "p!b"] and len(parked) == 2


def test_each_channels_order_holds_across_takes_put_backs_and_removals():
    parked = ParkedMessages([("p!a", park(b"1")), ("p!b", park(b"2")), ("p!a", park(b"3")), ("p!a", park(b"4"))])
    handed = parked.unpark("p!a")
    parked.forget("p!a", next(parked.of("p!a")))
    assert [entry.body for entry in parked.of("p!a")] == [b"4"] and len(parked) == 2
    parked.park_first("p!a", handed)  # handed to a receive that was cancelled: first of its channel again
    assert [entry.body for entry in parked.of("p!a")] == [b"1", b"4"] and parked.count("p!a") == 2
    assert sorted(entry.body for entry in parked) == [b"1", b"2", b"4"]
    assert [parked.unpark("p!a").body, parked.unpark("p!a").body, parked.unpark("p!a")] == [b"1", b"4", None]
    assert parked.oldest_channel() == "p!b"
    parked.clear()
    assert len(parked) == 0 and list(parked.of("p!c")) == []


def test_keeping_filters_entries_and_keeps_each_channels_order():
    parked = ParkedMessages([("p!a", park(b"1", tag=7)), ("p!a", park(b"2")), ("p!b", park(b"3", tag=8)),
                             ("p!a", park(b"4", tag=9))])
    held = parked.keeping(unacked)
    assert [(channel, entry.body) for channel, entry in held.items()] == [("p!a", b"1"), ("p!a", b"4"), ("p!b", b"3")]
    assert [(channel, entry.body) for channel, entry in parked.keeping(acked).items()] == [("p!a", b"2")]
    assert len(held) == 3 and len(parked) == 4  # a new set: the old one is left as it was


LOOP = asyncio.new_event_loop()  # futures made and read here; nothing runs on it


def _future() -> asyncio.Future:
    return LOOP.create_future()


def test_a_copy_for_late_members_is_one_entry_and_the_members_past_the_room_miss_it():
    state = QueueState("p!")
    assert place_copy(state, 2, ["p!a", "p!b", "p!c"], b"copy") == 1  # CAP-5: p!c missed it
    a, b = state.parked.unpark("p!a"), state.parked.unpark("p!b")
    assert a is b and a.body == b"copy" and state.parked.unpark("p!c") is None
    assert place_copy(state, 0, ["p!a"], b"none") == 1 and not state.parked


def test_waiting_members_are_handed_the_copy_and_the_others_park_it_until_the_room_is_gone():
    state = QueueState("p!")
    waiting = {channel: _future() for channel in ("p!b", "p!d")}
    for channel, future in waiting.items():
        state.waiters.add(channel, future)
    state.parked.park("p!c", park(b"older"))
    # In members' order: p!a parks (room 1 left), p!b is handed it, p!c parks behind its older
    # message (room 0), then the process is full: p!d and p!e miss it, waiting or not (CAP-5).
    assert place_copy(state, 2, ["p!a", "p!b", "p!c", "p!d", "p!e"], b"copy") == 2
    assert waiting["p!b"].result() == b"copy" and not waiting["p!d"].done()
    assert [entry.body for entry in state.parked.of("p!c")] == [b"older", b"copy"]
    assert state.parked.count("p!a") == 1 and state.parked.count("p!e") == 0


def test_what_a_group_send_took_in_ahead_of_its_copy_goes_to_waiting_receives_first():
    state = QueueState("p!")
    first, second = _future(), _future()
    state.waiters.add("p!a", first)
    state.waiters.add("p!a", second)
    state.parked.park("p!a", park(b"held", tag=5))  # unacked: a sibling's delivery, not served here
    state.parked.park("p!a", park(b"taken in"))
    serve_acked(state, "p!a")
    assert first.result() == b"taken in" and not second.done()
    assert [entry.body for entry in state.parked.of("p!a")] == [b"held"]
