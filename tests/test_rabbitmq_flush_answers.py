"""A flush waits for the loops whose consumers it ended (flush_answers.py, presence.py), XP-4.

A loop holds a message for a sibling channel, parked, read ahead while it received on another
channel of its process. Another process flushes; the broker cancels the loop's consumer, and the
loop drops what it parked when it reads that cancel; a receive that runs before it read it would
serve the message sent before the flush (a pipe from the flushing process can bring that order
about: suite XP-4, seen once in a gate). These tests hold the holding loop still (blocking its
thread): the flush must wait for it, and a loop held past the flush's wait must ask the broker
before it serves. They fail without the answers and without the presence check respectively.
Uses the session broker of conftest.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import Counter

from reference_layers.rabbitmq import RabbitMQChannelLayer, flush_answers
from reference_layers.rabbitmq.flush_answers import Tally, decode_answer, encode_answer
from reference_layers.rabbitmq.presence import AWAY
from tests.helpers import GENEROUS
from tests.loop_thread import LoopThread


async def _park_a_sibling_message(holder: RabbitMQChannelLayer, flusher: RabbitMQChannelLayer,
                                  on_holder: LoopThread) -> str:
    """Make the holder's loop park a message for its channel ``second`` (returned), read ahead
    while it received on its channel ``first``: the process queue is read from its head."""
    first, second = await on_holder.run(holder.new_channel()), await on_holder.run(holder.new_channel())
    await flusher.send(second, {"type": "stale"})
    await flusher.send(first, {"type": "prompt"})
    assert await on_holder.run(holder.receive(first)) == {"type": "prompt"}
    return second


def _layers(url: str) -> tuple[RabbitMQChannelLayer, RabbitMQChannelLayer]:
    prefix = f"flush{secrets.token_hex(4)}"  # a flush of its own: other tests' queues stay
    return RabbitMQChannelLayer(url=url, prefix=prefix), RabbitMQChannelLayer(url=url, prefix=prefix)


def test_a_flush_returns_only_once_the_holding_loop_dropped_what_it_parked(rabbitmq_url, holding_loop):
    async def scenario():
        holder, flusher = _layers(rabbitmq_url)
        second = await _park_a_sibling_message(holder, flusher, holding_loop)
        release = holding_loop.hold()
        try:
            flushing = asyncio.ensure_future(flusher.flush())
            done, _ = await asyncio.wait({flushing}, timeout=AWAY / 2)  # the holder is held for less than AWAY
            assert not done, "the flush returned while a loop holding a message from before it could not drop it"
        finally:
            release.set()
        await flushing
        await flusher.send(second, {"type": "fresh"})
        assert await holding_loop.run(holder.receive(second)) == {"type": "fresh"}
        await holding_loop.run(holder.close())
        await flusher.close()
    asyncio.run(asyncio.wait_for(scenario(), GENEROUS))


def test_a_loop_that_was_away_during_a_flush_asks_the_broker_before_serving_what_it_parked(
        rabbitmq_url, holding_loop, monkeypatch, caplog):
    ack_timeout = AWAY * 1.2  # the holder is held past AWAY: the flush stops waiting for it
    monkeypatch.setattr(flush_answers, "ACK_TIMEOUT", ack_timeout)

    async def scenario():
        holder, flusher = _layers(rabbitmq_url)
        second = await _park_a_sibling_message(holder, flusher, holding_loop)
        held, release = threading.Event(), threading.Event()

        async def held_then_receive() -> dict:
            held.set()
            release.wait(GENEROUS)  # blocks the loop: the broker's cancel stays unread in its socket
            return await holder.receive(second)  # begins in this very step, before the loop reads it

        received = holding_loop.submit(held_then_receive())
        try:
            await asyncio.to_thread(held.wait, GENEROUS)
            await flusher.flush()
        finally:
            release.set()
        await flusher.send(second, {"type": "fresh"})
        assert await asyncio.wrap_future(received) == {"type": "fresh"}, "served a message sent before the flush"
        await holding_loop.run(holder.close())
        await flusher.close()
    with caplog.at_level(logging.WARNING, logger="reference_layers.rabbitmq.flush_answers"):
        asyncio.run(asyncio.wait_for(scenario(), GENEROUS))
    warnings = [record.getMessage() for record in caplog.records if record.name == flush_answers.__name__]
    assert len(warnings) == 1 and warnings[0].endswith(  # the holder's consumers, one per open window
        f"consumer(s) in other event loops did not answer within {ack_timeout:g} s"), warnings


def test_an_answer_names_its_queue_and_its_consumers():
    assert decode_answer(encode_answer("asgi:q:specific.ab12!", 3)) == ("asgi:q:specific.ab12!", 3)


def test_a_tally_is_heard_once_every_queue_had_its_consumers_answered_for():
    async def scenario():
        tally = Tally(Counter({"a": 2, "b": 1, "c": 0}), asyncio.get_running_loop())
        tally.heard("a", 1)
        tally.heard("b", 1)
        tally.heard("z", 4)  # another flush's queue
        assert not tally.all_heard.done() and tally.missing() == 1
        tally.heard("a", 1)
        assert tally.all_heard.done()
        assert Tally(Counter({"c": 0}), asyncio.get_running_loop()).all_heard.done()  # nothing owed
    asyncio.run(scenario())


def test_a_flush_of_queues_in_use_and_gone_logs_no_warning(rabbitmq_url, caplog):
    """flush() deletes a queue in use only after a refused delete "if unused", and the notes of
    queues gone already (closed layers') are in the registry: answers the layer asked for, which
    pika would log as warnings of a closed channel."""
    async def scenario():
        receiving, closed = _layers(rabbitmq_url)
        gone = await closed.new_channel()
        await closed.send(gone, {"type": "note"})
        await closed.close()  # its process queue goes; its note in the registry stays
        channel = await receiving.new_channel()
        await receiving.send(channel, {"type": "warm.up"})
        assert await receiving.receive(channel) == {"type": "warm.up"}  # its consumer stays a while
        with caplog.at_level(logging.WARNING):
            await receiving.flush()
            await receiving.statistics([gone])  # asks about a queue gone
        await receiving.close()
    asyncio.run(asyncio.wait_for(scenario(), GENEROUS))
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
