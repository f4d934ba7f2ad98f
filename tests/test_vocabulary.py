"""The suite's own words, on their own: what they accept, what they fail with, which settings they read."""

import asyncio

import pytest

from asgi_conformance.settings import DEFAULTS, Settings, current_settings, in_force
from asgi_conformance.vocabulary import (
    cancel_all,
    is_channel_full,
    process_prefix_of,
    results_of,
    start_receives,
    still_waiting,
)
from reference_layers.base import ChannelFull
from reference_layers.inmemory import InMemoryChannelLayer

QUICK = Settings(quiet_period=0.05, delivery_timeout=0.2)


def test_process_prefix_of_is_the_name_up_to_and_including_the_bang():
    assert process_prefix_of("specific.abc!xyz") == "specific.abc!"


@pytest.mark.parametrize("name", ["no-bang-here", None, b"bytes!"])
def test_process_prefix_of_a_name_without_a_bang_fails_as_name_4(name):
    with pytest.raises(AssertionError, match="NAME-4"):
        process_prefix_of(name)


def test_is_channel_full_goes_by_class_name_along_the_mro():
    class OwnChannelFull(Exception):
        pass

    OwnChannelFull.__name__ = "ChannelFull"

    class Subclass(ChannelFull):
        pass

    assert is_channel_full(ChannelFull()) and is_channel_full(Subclass()) and is_channel_full(OwnChannelFull())
    assert not is_channel_full(ValueError("ChannelFull"))


def test_settings_in_force_end_with_their_block_and_reach_tasks_of_a_loop_started_inside():
    assert current_settings() == DEFAULTS

    async def seen_by_a_task() -> Settings:
        return await asyncio.ensure_future(asyncio.sleep(0, current_settings()))

    with in_force(QUICK):
        assert asyncio.run(seen_by_a_task()) == QUICK
        with in_force(DEFAULTS):
            assert current_settings() == DEFAULTS
        assert current_settings() == QUICK
    assert current_settings() == DEFAULTS


def test_still_waiting_fails_when_a_receive_returns_and_results_of_when_one_never_does():
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        channel = await layer.new_channel()
        first, second = receives = start_receives(layer, channel, 2)
        try:
            await still_waiting(*receives)  # nothing sent: both wait
            await layer.send(channel, {"type": "test.one"})
            with pytest.raises(AssertionError, match="although nothing was sent"):
                await still_waiting(*receives)
            with pytest.raises(AssertionError, match=r"1 of 2 receives got no message within 0.2 s"):
                await results_of(receives, "receives")
        finally:
            await cancel_all(receives)
        assert first.done() and second.done()

    with in_force(QUICK):
        asyncio.run(scenario())
