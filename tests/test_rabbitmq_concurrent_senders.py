"""Our RabbitMQ layer with many sending tasks in one process: capacity stays exact.

The senders-100 workload sends from 100 tasks of one event loop at once. Their publishes are
in flight together, so the broker, not the order in which the tasks started, decides which
ones fit (CAP-1); a receive frees exactly one place (CAP-2); nothing is lost or doubled, and
each sender's messages keep their order (CHAN-1, CHAN-2). Checked on a real broker.
"""

from __future__ import annotations

import asyncio

from reference_layers.base import ChannelFull
from reference_layers.rabbitmq import RabbitMQChannelLayer
from tests.helpers import closing, run

CAPACITY = 20


def test_a_burst_of_concurrent_sends_lets_exactly_capacity_in(rabbitmq_url):
    """CAP-1 under concurrency: 60 sends at once to a channel of capacity 20."""
    layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=CAPACITY)

    async def scenario():
        channel = await layer.new_channel()
        outcomes = await asyncio.gather(*(layer.send(channel, {"n": n}) for n in range(3 * CAPACITY)),
                                        return_exceptions=True)
        accepted = [n for n, outcome in enumerate(outcomes) if outcome is None]
        refused = [outcome for outcome in outcomes if outcome is not None]
        assert len(accepted) == CAPACITY
        assert len(refused) == 2 * CAPACITY and all(isinstance(error, ChannelFull) for error in refused)
        stats = await layer.statistics([channel])
        assert stats.channel_full_raised == 2 * CAPACITY
        assert stats.channels[channel].waiting == CAPACITY
        received = [(await layer.receive(channel))["n"] for _ in range(CAPACITY)]
        assert sorted(received) == accepted  # those that fitted, each once, none of the refused
        assert (await layer.statistics([channel])).channels[channel].waiting == 0

    run(closing(layer, scenario()))


def test_forty_senders_through_a_full_channel_lose_nothing_and_keep_their_order(rabbitmq_url):
    """CAP-2, CHAN-1 and CHAN-2 with 40 tasks sending 25 each into room for 20: a refused
    sender waits for the next receive, then tries again."""
    layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=CAPACITY)
    senders, each = 40, 25

    async def scenario():
        channel = await layer.new_channel()
        taken = asyncio.Condition()
        receives = refusals = 0

        async def sender(k: int) -> None:
            nonlocal refusals
            for i in range(each):
                while True:
                    before = receives  # a receive after this may have made the room a refusal missed
                    try:
                        await layer.send(channel, {"k": k, "i": i})
                        break
                    except ChannelFull:
                        refusals += 1
                        async with taken:
                            await taken.wait_for(lambda before=before: receives > before)

        async def receiver() -> list[tuple[int, int]]:
            nonlocal receives
            got = []
            for _ in range(senders * each):
                message = await layer.receive(channel)
                got.append((message["k"], message["i"]))
                async with taken:
                    receives += 1
                    taken.notify_all()
            return got

        *_, got = await asyncio.gather(*(sender(k) for k in range(senders)), receiver())
        assert sorted(got) == [(k, i) for k in range(senders) for i in range(each)]  # each once
        for k in range(senders):
            assert [i for who, i in got if who == k] == list(range(each))  # in its send order
        assert refusals > 0  # the channel really was full on the way
        assert (await layer.statistics()).channel_full_raised == refusals

    run(closing(layer, scenario()))
