"""Drop-in: the public helpers code moved from channels_redis or Django Channels calls, and a
receive that could never be served failing at once, on all four reference layers alike."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis
from channels.layers import BaseChannelLayer

from reference_layers.base import ForeignProcessChannel
from reference_layers.inmemory import InMemoryChannelLayer
from reference_layers.ipc import IPCChannelLayer
from reference_layers.rabbitmq import RabbitMQChannelLayer
from reference_layers.redis import RedisChannelLayer
from tests.helpers import CALL_LIMIT, run

from .ipc_helpers import remove_segment, unique_prefix

FAIL_FAST = 2.0  # seconds: "at once", with room for a loaded machine


@pytest.fixture(params=["inmemory", "ipc", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def make_layer(request):
    """Builds a layer of the kind under test; two calls give two objects of one deployment."""
    if request.param == "inmemory":
        return InMemoryChannelLayer
    if request.param == "ipc":
        prefix = unique_prefix("dropin")
        request.addfinalizer(lambda: remove_segment(prefix))
        return lambda: IPCChannelLayer(prefix=prefix)
    prefix = f"t{secrets.token_hex(4)}"
    if request.param == "rabbitmq":
        url = request.getfixturevalue("rabbitmq_url")
        return lambda: RabbitMQChannelLayer(url=url, prefix=prefix)
    urls = request.getfixturevalue("redis_urls")
    return lambda: RedisChannelLayer(hosts=urls, prefix=prefix)


def test_a_receive_on_another_objects_process_channel_fails_at_once(make_layer):
    mine, theirs = make_layer(), make_layer()

    async def scenario():
        foreign = await theirs.new_channel()
        own = await mine.new_channel()
        for name in (foreign, "handmade.abc!x", "nobody!"):
            started = asyncio.get_running_loop().time()
            with pytest.raises(ForeignProcessChannel, match="did not make it"):
                await asyncio.wait_for(mine.receive(name), CALL_LIMIT)
            assert asyncio.get_running_loop().time() - started < FAIL_FAST
        # The refusal harms nothing: the object's own channel and the other's still work.
        await mine.send(own, {"type": "to.mine"})
        assert (await asyncio.wait_for(mine.receive(own), CALL_LIMIT))["type"] == "to.mine"
        await theirs.send(foreign, {"type": "to.theirs"})
        assert (await asyncio.wait_for(theirs.receive(foreign), CALL_LIMIT))["type"] == "to.theirs"
        await mine.close()
        await theirs.close()

    run(scenario())


def test_the_foreign_channel_error_is_a_value_error_and_bad_names_stay_type_errors(make_layer):
    layer = make_layer()

    async def scenario():
        with pytest.raises(ValueError):
            await layer.receive("other.process!x")
        with pytest.raises(TypeError):
            await layer.receive("bad name!x")
        await layer.close()

    run(scenario())


NAMES = ["chat", "a.b-c_d", "p.abc!x", "p.abc!", "x" * 99, "x" * 100, "", "bad name", "two!bangs!", 7, None, b"bytes"]
GROUPS = ["room", "a.b-c_d", "p!x", "x" * 99, "x" * 100, "", "bad name", 7]


def outcome(call, *args):
    try:
        return ("returns", call(*args))
    except TypeError:
        return ("TypeError", None)


def test_the_name_helpers_answer_as_django_channels_base_layer_does(make_layer):
    layer, django = make_layer(), BaseChannelLayer()
    for name in NAMES:
        assert outcome(layer.require_valid_channel_name, name) == outcome(django.require_valid_channel_name, name), name
        if isinstance(name, str):
            assert layer.non_local_name(name) == django.non_local_name(name) == type(layer).non_local_name(name)
    for group in GROUPS:
        assert outcome(layer.require_valid_group_name, group) == outcome(django.require_valid_group_name, group), group
    assert layer.valid_channel_names(["a", "b!c"]) is True
    with pytest.raises(TypeError):
        layer.valid_channel_names(["a", "bad name"])
    with pytest.raises(TypeError):
        layer.valid_channel_names("a")
    run(layer.close())


@pytest.mark.redis
def test_redis_close_pools_is_close_and_the_layer_serves_again(redis_urls):
    layer = RedisChannelLayer(hosts=redis_urls, prefix=f"t{secrets.token_hex(4)}")
    probe = redis.Redis.from_url(redis_urls[0])
    baseline = probe.info("clients")["connected_clients"]

    async def scenario():
        await layer.send("dropin.pools", {"type": "one"})
        assert (await layer.receive("dropin.pools"))["type"] == "one"
        assert probe.info("clients")["connected_clients"] > baseline
        await layer.close_pools()
        deadline = asyncio.get_running_loop().time() + CALL_LIMIT
        while probe.info("clients")["connected_clients"] > baseline:
            assert asyncio.get_running_loop().time() < deadline, "close_pools() left connections open"
            await asyncio.sleep(0.02)
        await layer.send("dropin.pools", {"type": "two"})
        assert (await layer.receive("dropin.pools"))["type"] == "two"
        await layer.close_pools()

    try:
        run(scenario())
    finally:
        probe.close()
