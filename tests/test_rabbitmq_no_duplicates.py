"""RabbitMQ: a connection dropped at the worst moment delivers nothing twice and fails no call
(FAULT-5 at the exact points where the suite's run hits it only by chance).

The layer talks to the session broker through a proxy the test cuts (tests/cuttable_proxy.py):
- right after a receive returned, before the next receive: the layer had not acked that
  delivery yet, so the broker puts it back; it must not be delivered again;
- after the broker took a publish but before its confirm came back: the send must not raise,
  and the message must arrive once.
An observer layer, connected straight to the broker, watches the queue meanwhile, so each step
waits for the broker's own state, not for time to pass.
"""

from __future__ import annotations

import asyncio

from reference_layers.rabbitmq import RabbitMQChannelLayer
from tests.cuttable_proxy import CuttableProxy
from tests.helpers import GENEROUS, fresh, run

QUIET = 1.0  # seconds a receive must stay empty to show nothing more comes


async def _waiting(observer: RabbitMQChannelLayer, channel: str) -> int:
    return (await observer.statistics([channel])).channels[channel].waiting


async def _until_waiting(observer: RabbitMQChannelLayer, channel: str, count: int, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GENEROUS
    while (now := await _waiting(observer, channel)) != count:
        assert loop.time() < deadline, f"{what}: {now} message(s) wait on the broker, not {count}"
        await asyncio.sleep(0.01)


async def _nothing_more(layer: RabbitMQChannelLayer, channel: str) -> None:
    try:
        extra = await asyncio.wait_for(layer.receive(channel), QUIET)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"delivered again: {extra!r}")


def test_a_delivery_returned_just_before_the_connection_drops_is_not_delivered_again(rabbitmq_broker):
    async def scenario():
        port = int(rabbitmq_broker.url.rsplit(":", 1)[1].split("/")[0])
        async with CuttableProxy(port) as proxy:
            layer = RabbitMQChannelLayer(url=proxy.url())
            observer = RabbitMQChannelLayer(url=rabbitmq_broker.url)
            channel = fresh("dup-receive")
            try:
                for number in range(2):
                    await layer.send(channel, {"type": "numbered", "n": number})
                await _until_waiting(observer, channel, 2, "both messages sent")
                assert (await layer.receive(channel))["n"] == 0
                # At once, before the layer lets its idle consumer go (it acks then): message 0
                # was returned but not acked, so the broker requeues it.
                proxy.cut()
                await _until_waiting(observer, channel, 2, "message 0 back in the queue after the cut")
                assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 1, \
                    "the message a receive returned before the cut came again"
                await layer.send(channel, {"type": "numbered", "n": 2})
                assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 2
                await _nothing_more(layer, channel)
                assert proxy.accepted == 2, "the layer did not connect again exactly once"
            finally:
                await layer.close()
                await observer.close()

    run(scenario())


def test_a_send_whose_confirm_was_lost_with_the_connection_returns_and_arrives_once(rabbitmq_broker):
    async def scenario():
        port = int(rabbitmq_broker.url.rsplit(":", 1)[1].split("/")[0])
        async with CuttableProxy(port) as proxy:
            layer = RabbitMQChannelLayer(url=proxy.url())
            observer = RabbitMQChannelLayer(url=rabbitmq_broker.url)
            channel = fresh("dup-send")
            try:
                await layer.send(channel, {"type": "numbered", "n": 0})  # queue declared on this connection
                proxy.hold_replies()
                sending = asyncio.ensure_future(layer.send(channel, {"type": "numbered", "n": 1}))
                await _until_waiting(observer, channel, 2, "message 1 in the queue, its confirm held back")
                assert not sending.done(), "the send returned without its confirm"
                proxy.cut()
                await asyncio.wait_for(sending, GENEROUS)  # raises if the layer gave up on it
                got = [(await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] for _ in range(2)]
                assert got == [0, 1]
                await layer.send(channel, {"type": "numbered", "n": 2})
                assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 2, \
                    "message 1, sent again after the lost confirm, was delivered twice"
                await _nothing_more(layer, channel)
            finally:
                await layer.close()
                await observer.close()

    run(scenario())
