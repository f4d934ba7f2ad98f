"""RabbitMQ: a connection dropped at the worst moment delivers nothing twice and fails no call
(FAULT-5 at the exact points where the suite's run hits it only by chance).

The layer talks to the session broker through a proxy the test cuts (tests/cuttable_proxy.py):
- right after a receive returned, before the next receive: the layer had not acked that
  delivery yet, so the broker puts it back; it must not be delivered again;
- after the broker took a publish but before its confirm came back: the send must not raise,
  and the message must arrive once;
- at random points of numbered traffic, on each kind of target (a normal channel, a
  process-specific one, a group of the object's own members fed through its copies queue, a
  member added by another object through a forwarding queue): nothing lost, doubled,
  reordered, and no call raises. A few rounds in the gate; many with ``-m extended``.
An observer layer, connected straight to the broker, watches the queue meanwhile, so each step
waits for the broker's own state, not for time to pass.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

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


@dataclass
class Proxied:
    """A layer connected through a proxy the test cuts, and an observer straight to the broker."""

    proxy: CuttableProxy
    layer: RabbitMQChannelLayer
    observer: RabbitMQChannelLayer


def _broker_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@asynccontextmanager
async def _through_a_proxy(broker_url: str) -> AsyncIterator[Proxied]:
    async with CuttableProxy(_broker_port(broker_url)) as proxy:
        layer = RabbitMQChannelLayer(url=proxy.url())
        observer = RabbitMQChannelLayer(url=broker_url)
        try:
            yield Proxied(proxy, layer, observer)
        finally:
            await layer.close()
            await observer.close()


def test_a_delivery_returned_just_before_the_connection_drops_is_not_delivered_again(rabbitmq_broker):
    async def scenario():
        async with _through_a_proxy(rabbitmq_broker.url) as proxied:
            proxy, layer, observer = proxied.proxy, proxied.layer, proxied.observer
            channel = fresh("dup-receive")
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

    run(scenario())


def test_a_send_whose_confirm_was_lost_with_the_connection_returns_and_arrives_once(rabbitmq_broker):
    async def scenario():
        async with _through_a_proxy(rabbitmq_broker.url) as proxied:
            proxy, layer, observer = proxied.proxy, proxied.layer, proxied.observer
            channel = fresh("dup-send")
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

    run(scenario())


KINDS = ("normal", "process-specific", "own group member", "other object's group member")
TRAFFIC = 60  # numbered sends per round
CUTS = 2  # per round, at random points of the traffic


async def _target(layer: RabbitMQChannelLayer, kind: str, url: str) -> tuple[str, str | None]:
    """The channel to receive on, and the group to send to (None: send to the channel)."""
    if kind == "normal":
        return fresh("cut-traffic"), None
    channel, group = await layer.new_channel(), fresh("cut-group")
    if kind == "own group member":
        await layer.group_add(group, channel)
    elif kind == "other object's group member":
        other = RabbitMQChannelLayer(url=url)
        await other.group_add(group, channel)  # a forwarding queue, which outlives other's close()
        await other.close()
    return channel, None if kind == "process-specific" else group


async def _round_of_cuts(proxy: CuttableProxy, url: str, kind: str, rng: random.Random) -> list[str]:
    layer = RabbitMQChannelLayer(url=proxy.url(), capacity=10 * TRAFFIC)
    channel, group = await _target(layer, kind, url)
    returned: list[int] = []
    received: list[int] = []
    errors: list[str] = []
    all_arrived = asyncio.Event()

    async def send_all() -> None:
        for number in range(TRAFFIC):
            message = {"type": "numbered", "n": number}
            try:
                await (layer.group_send(group, message) if group else layer.send(channel, message))
                returned.append(number)
            except Exception as exc:  # noqa: BLE001 - counted: a transparent recovery raises nothing
                errors.append(f"send {number}: {exc!r}")
            await asyncio.sleep(0.002)

    async def receive_all() -> None:
        while True:
            try:
                received.append((await layer.receive(channel))["n"])
            except Exception as exc:  # noqa: BLE001 - counted as above
                errors.append(f"receive: {exc!r}")
                await asyncio.sleep(0.05)
            if len(received) >= TRAFFIC:
                all_arrived.set()

    async def cut() -> None:
        for _ in range(CUTS):
            await asyncio.sleep(rng.uniform(0.01, 0.15))
            proxy.cut()

    receiving = asyncio.ensure_future(receive_all())
    try:
        await asyncio.gather(send_all(), cut())
        if len(returned) == TRAFFIC:
            await asyncio.wait_for(all_arrived.wait(), GENEROUS)
        await _nothing_more(layer, channel)
    except (AssertionError, asyncio.TimeoutError) as exc:
        errors.append(f"after the traffic: {exc!r}")
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        await layer.close()
    problems = [f"{kind}: {error}" for error in errors]
    if doubled := sorted(n for n, count in Counter(received).items() if count > 1):
        problems.append(f"{kind}: delivered twice: {doubled}")
    if lost := sorted(set(returned) - set(received)):
        problems.append(f"{kind}: lost although their send returned: {lost}")
    if swapped := [(a, b) for a, b in zip(received, received[1:]) if b < a]:
        problems.append(f"{kind}: out of order: {swapped[:5]}")
    return problems


def _cuts_mid_traffic(rabbitmq_broker, kind: str, rounds: int) -> None:
    rng = random.Random()  # a failing round prints its problems; the cut points differ each run

    async def scenario():
        problems: list[str] = []
        async with CuttableProxy(_broker_port(rabbitmq_broker.url)) as proxy:
            for _ in range(rounds):
                problems += await _round_of_cuts(proxy, rabbitmq_broker.url, kind, rng)
        return problems

    problems = run(scenario())
    assert not problems, problems


@pytest.mark.parametrize("kind", KINDS)
def test_connections_cut_mid_traffic_lose_double_and_fail_nothing(rabbitmq_broker, kind):
    _cuts_mid_traffic(rabbitmq_broker, kind, rounds=1)


@pytest.mark.extended
@pytest.mark.parametrize("kind", KINDS)
def test_many_connections_cut_mid_traffic_lose_double_and_fail_nothing(rabbitmq_broker, kind):
    _cuts_mid_traffic(rabbitmq_broker, kind, rounds=25)


def test_a_connection_cut_while_its_channels_open_is_tried_again_at_once(rabbitmq_broker, monkeypatch):
    """A cut between the AMQP handshake and its channels' open-ok must fail that attempt at
    once, not leave it waiting for open-ok until the layer's timeout (the traffic test above
    saw a send give up after 15 s so, now and then)."""
    from reference_layers.rabbitmq import link as link_module

    opening = link_module.Link._open_channel
    cuts: list[int] = []

    async def scenario():
        async with CuttableProxy(_broker_port(rabbitmq_broker.url)) as proxy:
            async def cut_the_first_time(self):
                if not cuts:
                    cuts.append(1)
                    proxy.cut()  # the channel.open about to go out meets a closed connection
                return await opening(self)

            monkeypatch.setattr(link_module.Link, "_open_channel", cut_the_first_time)
            layer = RabbitMQChannelLayer(url=proxy.url(), timeout=5)
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                channel = fresh("cut-at-open")
                await layer.send(channel, {"type": "numbered", "n": 0})
                assert cuts, "the handshake was not cut: this test tested nothing"
                assert loop.time() - started < 2.5, "the cut attempt waited for its timeout"
                assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 0
            finally:
                await layer.close()

    run(scenario())
