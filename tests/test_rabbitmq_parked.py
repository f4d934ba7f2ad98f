"""ParkedMessages: a queue's parked deliveries, each taken by its channel at once and oldest
first per channel, in whatever order a late fan-out's members come for theirs. No broker needed."""

from __future__ import annotations

from reference_layers.rabbitmq.parked import ParkedMessages
from reference_layers.rabbitmq.queue_state import Parked


def park(channel: str, body: bytes) -> Parked:
    return Parked(channel, body, None, None, 0.0)


def test_each_channel_takes_its_oldest_first_in_any_order_of_channels():
    parked = ParkedMessages(park(f"p!{n}", b"copy") for n in range(1000))
    parked.park(park("p!7", b"later"))
    taken = [parked.unpark(f"p!{n}") for n in reversed(range(1000))]
    assert [entry.channel for entry in taken if entry is not None] == [f"p!{n}" for n in reversed(range(1000))]
    assert [entry.body for entry in parked] == [b"later"]  # p!7's younger one waits on
    assert len(parked) == 1 and parked.count("p!7") == 1 and parked.unpark("p!8") is None
    assert parked.unpark("p!7").body == b"later"
    assert not parked and parked.oldest_of_any() is None and list(parked) == []


def test_each_channels_order_holds_across_takes_put_backs_and_removals():
    parked = ParkedMessages([park("p!a", b"1"), park("p!b", b"2"), park("p!a", b"3"), park("p!a", b"4")])
    handed = parked.unpark("p!a")
    parked.forget(next(parked.of("p!a")))
    assert [entry.body for entry in parked.of("p!a")] == [b"4"] and len(parked) == 2
    parked.park_first(handed)  # handed to a receive that was cancelled: first of its channel again
    assert [entry.body for entry in parked.of("p!a")] == [b"1", b"4"] and parked.count("p!a") == 2
    assert sorted(entry.body for entry in parked) == [b"1", b"2", b"4"]
    assert [parked.unpark("p!a").body, parked.unpark("p!a").body, parked.unpark("p!a")] == [b"1", b"4", None]
    assert parked.oldest_of_any().body == b"2"
    parked.clear()
    assert len(parked) == 0 and list(parked.of("p!c")) == []
