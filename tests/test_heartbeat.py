"""core/heartbeat.py: whether an event loop ran lately, which the Redis and RabbitMQ layers ask
before they serve what they hold after a flush may have come (XP-4). No server, no I/O: the
clock is the test's own, except where the beat itself is what is tested."""

from __future__ import annotations

import asyncio

from reference_layers.core import heartbeat
from reference_layers.core.heartbeat import AWAY, Heartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_never_started_says_the_loop_was_away():
    assert not Heartbeat(clock=Clock()).ran_lately()


def test_a_started_heartbeat_ages_past_away_unless_marked_again():
    async def scenario():
        clock = Clock()
        beat = Heartbeat(clock=clock)
        beat.start()
        try:
            assert beat.ran_lately() and beat.marked_at == clock.now
            clock.now += AWAY * 0.9
            assert beat.ran_lately()
            clock.now += AWAY * 0.2  # no beat came: the loop did not run (a blocked thread)
            assert not beat.ran_lately()
            beat.mark()  # a round trip to the server stands in for the beat it missed
            assert beat.ran_lately()
            beat.start()  # beating already: a mark, no second timer
            assert beat.marked_at == clock.now
        finally:
            beat.stop()
    asyncio.run(scenario())


def test_a_running_loop_beats_and_a_stopped_heartbeat_beats_no_more(monkeypatch):
    monkeypatch.setattr(heartbeat, "HEARTBEAT", 0.01)

    async def scenario():
        clock = Clock()
        beat = Heartbeat(clock=clock)
        beat.start()
        clock.now += 5.0
        await asyncio.sleep(0.05)  # the loop runs: its timer marks it on the clock
        assert beat.marked_at == clock.now
        beat.stop()
        clock.now += 5.0
        await asyncio.sleep(0.05)
        assert beat.marked_at == clock.now - 5.0 and not beat.ran_lately()
    asyncio.run(scenario())
