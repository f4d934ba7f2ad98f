"""statistics(): what a reference layer holds, read through its public API.

Every number is checked against what the test itself did: messages sent and not received,
ChannelFull raised, a group member too full to get its copy (CAP-5: silent to the sender,
counted here), and the connection to each server before, during and after a restart.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys

import pytest

from reference_layers.base import ChannelFull
from reference_layers.core.statistics import ConnectionState
from reference_layers.inmemory import InMemoryChannelLayer
from reference_layers.ipc import IPCChannelLayer
from reference_layers.rabbitmq import RabbitMQChannelLayer
from reference_layers.redis import RedisChannelLayer
from tests.helpers import CALL_LIMIT, run

from .ipc_helpers import remove_segment, unique_prefix


def redis_layer(urls, **config) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=list(urls), prefix=f"t{secrets.token_hex(4)}", **config)


@pytest.fixture(params=["inmemory", "ipc", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def make_layer(request):
    """Builds the layer under test with the given config (Redis: on three real shards; IPC: on
    a segment of its own, removed after the test)."""
    if request.param == "inmemory":
        return InMemoryChannelLayer
    if request.param == "ipc":
        prefix = unique_prefix("stats")
        request.addfinalizer(lambda: remove_segment(prefix))
        return lambda **config: IPCChannelLayer(prefix=prefix, **config)
    if request.param == "rabbitmq":
        url = request.getfixturevalue("rabbitmq_url")
        return lambda **config: RabbitMQChannelLayer(url=url, prefix=f"t{secrets.token_hex(4)}", **config)
    urls = request.getfixturevalue("redis_shard_urls")
    return lambda **config: redis_layer(urls, **config)


async def settled(layer, channels, done):
    """statistics(channels) once ``done`` holds for it, or when CALL_LIMIT has passed. RabbitMQ
    routes a group copy to its member after confirming the publish, so it may lag a moment."""
    deadline = asyncio.get_running_loop().time() + CALL_LIMIT
    while not done(answer := await layer.statistics(channels)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return answer


def test_counts_waiting_messages_full_channels_and_missed_group_copies(make_layer):
    layer = make_layer(capacity=2)
    full, roomy, empty = "stats.full", "stats.roomy", "stats.empty"

    async def scenario():
        assert "statistics" in layer.extensions
        for n in range(2):
            await layer.send(full, {"type": "t", "n": n})
        with pytest.raises(ChannelFull):
            await layer.send(full, {"type": "t", "n": 2})
        await layer.send(roomy, {"type": "t", "n": 0})
        for member in (full, roomy):
            await layer.group_add("room", member)
        await layer.group_send("room", {"type": "t", "n": "group"})  # `full` misses it silently
        named = await settled(layer, [full, roomy, empty],
                              lambda answer: answer.channels[roomy].waiting == 2 and answer.group_deliveries_missed)
        everything = await layer.statistics()
        await layer.receive(roomy)
        after_receive = await layer.statistics([roomy])
        await layer.flush()
        await layer.close()
        return named, everything, after_receive

    named, everything, after_receive = run(scenario())
    assert {name: row.waiting for name, row in named.channels.items()} == {full: 2, roomy: 2, empty: 0}
    assert named.channels[empty].oldest_age is None
    if isinstance(layer, RabbitMQChannelLayer):  # AMQP shows a queue's head only by taking it
        assert all(named.channels[name].oldest_age is None for name in (full, roomy))
    else:
        assert all(0 <= named.channels[name].oldest_age < layer.expiry for name in (full, roomy))
    assert named.channel_full_raised == 1
    assert named.group_deliveries_missed == 1
    if isinstance(layer, RedisChannelLayer):
        assert set(named.connections) == {address.name for address in layer.addresses}
        assert set(named.connections.values()) == {ConnectionState.CONNECTED}
    elif isinstance(layer, RabbitMQChannelLayer):
        assert list(named.connections.values()) == [ConnectionState.CONNECTED]  # its one node
    else:
        assert named.connections == {}  # no server
    assert set(everything.channels) == {full, roomy}  # every channel of the prefix, on any shard
    assert everything.channels[full].waiting == 2 and everything.channels[roomy].waiting == 2
    assert after_receive.channels[roomy].waiting == 1


def test_redis_reports_a_connection_lost_to_a_restart_and_connected_again_after(redis_server):
    layer = redis_layer(redis_server.urls)

    async def scenario():
        before = (await layer.statistics([])).connections
        await layer.send("stats.one", {"type": "t"})
        connected = (await layer.statistics([])).connections
        redis_server.restart()
        # The server closed the socket: the layer hears it on its loop, without a call.
        deadline = asyncio.get_running_loop().time() + CALL_LIMIT
        while set((await layer.statistics([])).connections.values()) != {ConnectionState.LOST}:
            assert asyncio.get_running_loop().time() < deadline, "the lost connection was never noticed"
            await asyncio.sleep(0.01)
        await asyncio.wait_for(layer.send("stats.one", {"type": "t"}), CALL_LIMIT)
        again = (await layer.statistics(["stats.one"]))
        await layer.flush()
        await layer.close()
        return before, connected, again

    before, connected, again = run(scenario())
    assert set(before.values()) == {ConnectionState.NOT_CONNECTED}
    assert set(connected.values()) == {ConnectionState.CONNECTED}
    assert set(again.connections.values()) == {ConnectionState.CONNECTED}
    assert again.channels["stats.one"].waiting == 1  # the restart lost the first; the second is there


def test_redis_statistics_on_the_command_line(redis_urls):
    layer = redis_layer(redis_urls)

    async def fill():
        await layer.send("stats.cli", {"type": "t"})
        await layer.close()

    async def empty():
        await layer.flush()
        await layer.close()

    run(fill())
    printed = subprocess.run(
        [sys.executable, "-m", "reference_layers.redis", "--stats", "--hosts", *redis_urls,
         "--prefix", layer.prefix], capture_output=True, text=True, timeout=60, check=True).stdout
    answer = json.loads(printed)
    assert answer["channels"]["stats.cli"]["waiting"] == 1
    assert set(answer["connections"].values()) == {"connected"}
    run(empty())
