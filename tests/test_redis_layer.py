"""Our Redis layer's own promises, beyond the conformance suite, checked on real servers.

Sharding (hash ring movement, a process's channels together), atomic capacity under
concurrent senders, expiry stamped by the server's clock, encryption, one script per shard
for group_send, recovery from a server restart (bounded reconnects, memberships added again),
config errors, hiredis.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import time

import pytest
import redis
from cryptography.fernet import InvalidToken
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from reference_layers.base import ChannelFull, LayerConfigError
from reference_layers.redis import RedisChannelLayer, ShardUnreachable
from reference_layers.redis.hashring import HashRing
from tests.helpers import CALL_LIMIT, closing, eventually, fresh, run


def layer_on(urls, **config) -> RedisChannelLayer:
    """A layer with its own prefix, so tests never see each other's keys."""
    config.setdefault("prefix", f"t{secrets.token_hex(4)}")
    return RedisChannelLayer(hosts=list(urls), **config)


def raw(url: str) -> Redis:
    return redis.Redis.from_url(url)


# --- sharding ------------------------------------------------------------------------------

def test_adding_a_fifth_shard_to_four_moves_about_a_fifth_of_the_channels_all_to_the_new_one():
    four = RedisChannelLayer(hosts=[f"redis://10.0.0.{n}:6379" for n in range(1, 5)])
    five = RedisChannelLayer(hosts=[f"redis://10.0.0.{n}:6379" for n in range(1, 6)])
    channels = [f"room.{n}" for n in range(20_000)]
    moved = [c for c in channels if four.ring.node_for(c) != five.ring.node_for(c)]
    assert 0.15 <= len(moved) / len(channels) <= 0.25, f"{len(moved) / len(channels):.3f} of channels moved"
    assert {five.ring.node_for(c) for c in moved} == {"10.0.0.5:6379/0"}


def test_shards_are_placed_by_address_not_by_their_order_in_hosts():
    hosts = [f"redis://10.0.0.{n}:6379" for n in range(1, 4)]
    forward, backward = HashRing(hosts), HashRing(hosts[::-1])
    assert all(forward.node_for(f"c{n}") == backward.node_for(f"c{n}") for n in range(2000))


def test_every_process_specific_channel_of_one_process_lives_on_the_same_shard():
    layer = RedisChannelLayer(hosts=[f"redis://10.0.0.{n}:6379" for n in range(1, 4)])
    shards_used = set()
    for process in range(200):
        prefix = f"specific.{secrets.token_hex(8)}!"
        indexes = {layer.shard_index(prefix + secrets.token_hex(8)) for _ in range(20)}
        assert len(indexes) == 1, f"{prefix}* spread over shards {indexes}"
        shards_used |= indexes
    assert shards_used == {0, 1, 2}  # while different processes do spread over the shards


def test_a_process_channels_queues_are_stored_on_one_server(redis_shard_urls):
    layer = layer_on(redis_shard_urls)

    async def body():
        name = await layer.new_channel()
        siblings = [name + suffix for suffix in ("a", "b", "c", "d")]
        for sibling in siblings:
            await layer.send(sibling, {"to": sibling})
        holders = {url for url in redis_shard_urls for sibling in siblings
                   if raw(url).exists(layer.keys.queue(sibling))}
        assert holders == {redis_shard_urls[layer.shard_index(name)]}
        for sibling in siblings:
            assert (await layer.receive(sibling))["to"] == sibling

    run(closing(layer, body()))


# --- capacity under concurrency --------------------------------------------------------------

def test_fifty_concurrent_senders_on_capacity_ten_get_exactly_ten_messages_in(redis_urls):
    senders = [layer_on(redis_urls, capacity=10, prefix="t-concurrent") for _ in range(5)]
    channel = fresh("crowded")

    async def send(index):
        try:
            await senders[index % 5].send(channel, {"n": index})
            return "sent"
        except ChannelFull:
            return "full"

    async def body():
        outcomes = await asyncio.gather(*(send(n) for n in range(50)))
        assert outcomes.count("sent") == 10 and outcomes.count("full") == 40
        got = [await asyncio.wait_for(senders[0].receive(channel), CALL_LIMIT) for _ in range(10)]
        assert len({message["n"] for message in got}) == 10
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(senders[0].receive(channel), 0.5)
        for layer in senders:
            await layer.close()

    run(closing(senders[0], body()))


# --- expiry on the server's clock ---------------------------------------------------------------

def test_message_and_membership_expiry_are_stamped_with_the_servers_clock(redis_urls):
    layer = layer_on(redis_urls, expiry=7, group_expiry=300)
    server = raw(redis_urls[0])
    channel, group = fresh(), fresh("group")

    def server_ms():
        seconds, micros = server.time()
        return seconds * 1000 + micros // 1000

    async def body():
        before = server_ms()
        await layer.send(channel, {"n": 1})
        await layer.group_add(group, channel)
        after = server_ms()
        [entry] = server.lrange(layer.keys.queue(channel), 0, -1)
        expires = int(entry.split(b":", 1)[0])
        assert before + 7000 <= expires <= after + 7000
        [(member, score)] = server.zrange(layer.keys.group_members(group), 0, -1, withscores=True)
        assert member.decode() == channel and before + 300_000 <= score <= after + 300_000

    run(closing(layer, body()))


def test_a_message_expires_even_with_younger_ones_behind_it_and_no_send_in_between(redis_urls):
    layer = layer_on(redis_urls, expiry=1)
    channel = fresh()

    async def body():
        await layer.send(channel, {"n": "old"})
        await asyncio.sleep(0.6)  # waiting out expiry is the behaviour under test: no event to await
        await layer.send(channel, {"n": "young"})
        await asyncio.sleep(0.6)  # the old one has expired; the young one has not
        assert (await asyncio.wait_for(layer.receive(channel), CALL_LIMIT))["n"] == "young"

    run(closing(layer, body()))


# --- cancellation ---------------------------------------------------------------------------------

async def cancelled_around_delivery(layer, channel: str, then, rounds: int = 40) -> list:
    """Send ``rounds`` messages on ``channel``, each while a receive of ``layer`` waits, and cancel
    that receive at a different moment around the delivery each time: what it got, or else what
    a receive of ``then`` (another instance, or the same) gets next. No message may be lost."""
    got = []
    for n in range(rounds):
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.001 * (n % 4))  # varies where the cancel lands: the timing is the test
        await layer.send(channel, {"n": n})
        for _ in range(n % 7):
            await asyncio.sleep(0)
        receiving.cancel()
        try:
            got.append((await receiving)["n"])
        except asyncio.CancelledError:
            got.append((await asyncio.wait_for(then.receive(channel), CALL_LIMIT))["n"])
    return got


def test_a_receive_cancelled_around_delivery_leaves_its_message_for_another_instance(redis_urls):
    """Cancelled at every moment of a delivery, no message is lost: one the cancelled receive
    had already popped goes back to the head of the list, where another layer instance finds it."""
    prefix = f"t-cancel-{secrets.token_hex(3)}"
    first, second = layer_on(redis_urls, prefix=prefix), layer_on(redis_urls, prefix=prefix)
    channel = fresh()

    async def body():
        assert await cancelled_around_delivery(first, channel, second) == list(range(40))
        await second.close()

    run(closing(first, body()))


def test_a_member_waiting_again_and_cancelled_around_delivery_loses_nothing(redis_urls):
    """A receive on a channel received on before, while a sibling keeps its process's receiver
    waiting, waits on that receiver at once (no check, no pop of its own). Cancelled at every
    moment of a delivery, its message is neither lost nor doubled: the next receive gets it."""
    layer = layer_on(redis_urls)

    async def body():
        sibling_channel, channel = await layer.new_channel(), await layer.new_channel()
        await layer.send(channel, {"n": -1})
        assert (await layer.receive(channel))["n"] == -1  # checked, and its key has a receiver
        sibling = asyncio.ensure_future(layer.receive(sibling_channel))  # keeps the receiver waiting
        assert await cancelled_around_delivery(layer, channel, layer) == list(range(40))
        assert not sibling.done()
        await layer.send(sibling_channel, {"n": "sibling"})
        assert (await asyncio.wait_for(sibling, CALL_LIMIT))["n"] == "sibling"

    run(closing(layer, body()))


# --- encryption ---------------------------------------------------------------------------------

def test_encrypted_bodies_are_not_stored_in_plaintext_and_old_keys_still_decrypt(redis_urls):
    prefix = f"t-crypt-{secrets.token_hex(3)}"
    old = layer_on(redis_urls, prefix=prefix, symmetric_encryption_keys=["old secret"])
    rotated = layer_on(redis_urls, prefix=prefix, symmetric_encryption_keys=["new secret", "old secret"])
    new_only = layer_on(redis_urls, prefix=prefix, symmetric_encryption_keys=["new secret"])
    server = raw(redis_urls[0])
    channel = fresh()

    async def body():
        await old.send(channel, {"text": "plaintext-marker"})
        [stored] = server.lrange(old.keys.queue(channel), 0, -1)
        assert b"plaintext-marker" not in stored and b"text" not in stored
        assert await rotated.receive(channel) == {"text": "plaintext-marker"}  # rotation: old key decrypts

        await rotated.send(channel, {"text": "from the new key"})
        assert await new_only.receive(channel) == {"text": "from the new key"}  # the first key encrypts

        await rotated.send(channel, {"text": "unreadable without the new key"})
        with pytest.raises(InvalidToken):
            await old.receive(channel)
        for layer in (old, new_only):
            await layer.close()

    run(closing(rotated, body()))


# --- group_send: one script per shard ----------------------------------------------------------

def test_group_send_is_one_evalsha_per_shard_whatever_the_group_size(redis_shard_urls):
    layer = layer_on(redis_shard_urls)
    group = fresh("group")
    members = []
    while min(sum(layer.shard_index(m) == i for m in members) for i in range(3)) < 10:
        members.append(fresh("member"))

    async def body():
        for member in members:
            await layer.group_add(group, member)
        await layer.group_send(group, {"n": 0})  # scripts are loaded and connections open now
        with ClientCommands(redis_shard_urls) as seen:
            await layer.group_send(group, {"n": 1})
        assert seen.commands == [["EVALSHA"]] * 3, seen.commands
        for member in members:
            assert [(await layer.receive(member))["n"] for _ in range(2)] == [0, 1]

    run(closing(layer, body()))


class ClientCommands:
    """The commands clients send to each server during a ``with`` block, seen through MONITOR
    (commands a Lua script runs are left out: they are no round trips; ``scripts``: only those
    are kept, the work the scripts did)."""

    def __init__(self, urls, scripts: bool = False):
        self.urls = urls
        self.scripts = scripts
        self.marker = f"end-of-watch-{secrets.token_hex(4)}"
        self.commands = [[] for _ in urls]

    def __enter__(self):
        self._markers = [raw(url) for url in self.urls]
        for marker in self._markers:
            marker.ping()  # connected before watching: only its ECHO shows up later
        self._monitors = [raw(url).monitor() for url in self.urls]
        for monitor in self._monitors:
            monitor.__enter__()  # MONITOR is acknowledged: from here on every command is seen
        return self

    def __exit__(self, *exc_info):
        for marker, monitor, seen in zip(self._markers, self._monitors, self.commands):
            marker.echo(self.marker)
            while True:
                entry = monitor.next_command()
                if self.marker in entry["command"]:
                    break
                if (entry["client_type"] == "lua") == self.scripts:
                    seen.append(entry["command"].split(" ", 1)[0].upper())
            monitor.__exit__(None, None, None)


# --- restart ---------------------------------------------------------------------------------------

def test_after_a_server_restart_mid_traffic_sends_are_delivered_and_no_call_hangs(redis_server):
    layer = layer_on(redis_server.urls)
    traffic, watched = fresh("traffic"), fresh("watched")

    async def keep_sending(stop: asyncio.Event, outcomes: list):
        n = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(layer.send(traffic, {"n": n}), CALL_LIMIT)
                outcomes.append("sent")
            except (RedisConnectionError, ConnectionError, OSError):
                outcomes.append("error")  # the server is down: an error is fine, a hang is not
            except ChannelFull:
                await asyncio.wait_for(layer.receive(traffic), CALL_LIMIT)
            n += 1
            await asyncio.sleep(0.01)  # paces the traffic: a rate, not a wait for something

    async def body():
        waiting = asyncio.ensure_future(layer.receive(watched))  # blocked across the restart
        await layer.send(traffic, {"n": -1})
        stop, outcomes = asyncio.Event(), []
        sender = asyncio.ensure_future(keep_sending(stop, outcomes))
        await eventually(lambda: "sent" in outcomes, CALL_LIMIT, "the traffic never started")
        await asyncio.to_thread(redis_server.restart)
        after_restart = len(outcomes)
        await eventually(lambda: "sent" in outcomes[after_restart:], CALL_LIMIT, "no send got through after the restart")
        stop.set()
        await asyncio.wait_for(sender, CALL_LIMIT)

        for n in range(5):
            await asyncio.wait_for(layer.send(watched, {"n": n}), CALL_LIMIT)
        got = [(await asyncio.wait_for(waiting, CALL_LIMIT))["n"]]
        got += [(await asyncio.wait_for(layer.receive(watched), CALL_LIMIT))["n"] for _ in range(4)]
        assert got == [0, 1, 2, 3, 4]

    run(closing(layer, body()), timeout=120)


def test_scripts_flushed_from_the_server_are_loaded_again_and_no_message_is_lost(redis_urls):
    layer = layer_on(redis_urls)
    channel, group = fresh(), fresh("group")

    async def body():
        await layer.send(channel, {"n": 0})
        assert (await layer.receive(channel))["n"] == 0  # every script is loaded now
        raw(redis_urls[0]).script_flush()
        await asyncio.wait_for(layer.send(channel, {"n": 1}), CALL_LIMIT)  # the send's script is gone
        assert (await asyncio.wait_for(layer.receive(channel), CALL_LIMIT))["n"] == 1
        raw(redis_urls[0]).script_flush()
        waiting = asyncio.ensure_future(layer.receive(channel))  # its pop meets NOSCRIPT
        await asyncio.wait_for(layer.group_add(group, channel), CALL_LIMIT)
        await asyncio.wait_for(layer.group_send(group, {"n": 2}), CALL_LIMIT)
        assert (await asyncio.wait_for(waiting, CALL_LIMIT))["n"] == 2

    run(closing(layer, body()))


# --- nothing listening: bounded reconnects --------------------------------------------------------

RECONNECT_BOUND = 1.0  # seconds: the reconnect_timeout these tests give, short to keep them quick


@pytest.mark.parametrize("call", ["receive", "send", "group_send"])
def test_with_nothing_listening_a_call_fails_within_reconnect_timeout_naming_the_address(call):
    from asgi_conformance.servers.network import free_port

    port = free_port()
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}"], reconnect_timeout=RECONNECT_BOUND)
    calls = {"receive": lambda: layer.receive("nowhere"), "send": lambda: layer.send("nowhere", {"n": 0}),
             "group_send": lambda: layer.group_send("nobody", {"n": 0})}

    async def body():
        started = time.monotonic()
        with pytest.raises(ShardUnreachable) as caught:
            await asyncio.wait_for(calls[call](), CALL_LIMIT)
        took = time.monotonic() - started
        assert RECONNECT_BOUND <= took < CALL_LIMIT, f"{call}() failed after {took:.2f} s"
        assert f"127.0.0.1:{port}" in str(caught.value)
        assert isinstance(caught.value, ConnectionError) and isinstance(caught.value, RedisConnectionError)
        # The shard is known unreachable now: the next call tries once more and fails at once.
        again = time.monotonic()
        with pytest.raises(ShardUnreachable):
            await asyncio.wait_for(calls[call](), CALL_LIMIT)
        assert time.monotonic() - again < RECONNECT_BOUND

    run(body())


# --- memberships after a restart that lost the server's state -----------------------------------

def _membership_left_ms(url: str, prefix: str, group: str, channel: str) -> int | None:
    """How long the server keeps ``channel`` in ``group`` (ms), None if it is no member."""
    server = raw(url)
    score = server.zscore(f"{prefix}:g:{group}", channel)
    if score is None:
        return None
    seconds, micros = server.time()
    return int(score) - (seconds * 1000 + micros // 1000)


async def _restart_and_reconnect(redis_server, layer, probe: str) -> None:
    """Restart the server (its state lost), then one round trip so the layer reconnects."""
    await asyncio.to_thread(redis_server.restart)
    await asyncio.wait_for(layer.send(probe, {"probe": True}), CALL_LIMIT)
    assert (await asyncio.wait_for(layer.receive(probe), CALL_LIMIT)) == {"probe": True}


def test_memberships_are_added_again_after_a_restart_for_the_time_they_had_left(redis_server):
    layer = layer_on(redis_server.urls, group_expiry=3600)
    group, kept, discarded, probe = fresh("group"), fresh("kept"), fresh("discarded"), fresh("probe")

    async def body():
        await layer.group_add(group, kept)
        await layer.group_add(group, discarded)
        await layer.group_discard(group, discarded)
        await _restart_and_reconnect(redis_server, layer, probe)
        left = _membership_left_ms(redis_server.url, layer.prefix, group, kept)
        assert left is not None, "the membership made before the restart was not added again"
        assert 3_500_000 < left <= 3_600_000, f"re-added for {left} ms, not for the time it had left"
        assert _membership_left_ms(redis_server.url, layer.prefix, group, discarded) is None, \
            "a membership discarded before the restart was added again"
        await layer.group_send(group, {"after": "restart"})
        assert await asyncio.wait_for(layer.receive(kept), CALL_LIMIT) == {"after": "restart"}
        await layer.send(discarded, {"direct": True})  # the discarded member got no copy: this comes first
        assert await asyncio.wait_for(layer.receive(discarded), CALL_LIMIT) == {"direct": True}

    run(closing(layer, body()))


def test_a_membership_past_its_expiry_is_not_added_again_after_a_restart(redis_server):
    layer = layer_on(redis_server.urls, group_expiry=1)
    group, member, probe = fresh("group"), fresh("member"), fresh("probe")

    async def body():
        await layer.group_add(group, member)
        added = time.monotonic()
        await eventually(lambda: time.monotonic() - added > layer.group_expiry, CALL_LIMIT, "group expiry to pass")
        await _restart_and_reconnect(redis_server, layer, probe)
        assert _membership_left_ms(redis_server.url, layer.prefix, group, member) is None, \
            "a membership past its group_expiry was added again after the restart"

    run(closing(layer, body()))


def test_a_flush_before_a_restart_is_not_undone_by_adding_memberships_again(redis_server):
    layer = layer_on(redis_server.urls)
    group, member, probe = fresh("group"), fresh("member"), fresh("probe")

    async def body():
        await layer.group_add(group, member)
        await layer.flush()
        await _restart_and_reconnect(redis_server, layer, probe)
        assert _membership_left_ms(redis_server.url, layer.prefix, group, member) is None, \
            "a membership flushed before the restart was added again"

    run(closing(layer, body()))


# --- flush, config, hiredis ------------------------------------------------------------------------

def test_flush_deletes_this_prefixs_messages_and_nothing_else_on_every_shard(redis_shard_urls):
    prefix = f"t-flush{secrets.token_hex(3)}"
    layer = layer_on(redis_shard_urls, prefix=prefix)
    servers = [raw(url) for url in redis_shard_urls]
    for server in servers:
        server.set(f"{prefix}x:q:foreign", 1)  # a longer prefix: not ours
        server.set(f"other:{prefix}:q:foreign", 1)
    channels = [fresh() for _ in range(30)]

    async def body():
        for channel in channels:
            await layer.send(channel, {"n": 1})
        assert all(server.keys(f"{prefix}:*") for server in servers)
        await layer.flush()
        for server in servers:
            bells = f"{prefix}:b:".encode()  # wake-up streams hold no messages: they may stay
            epoch = layer.keys.flush_epoch.encode()  # so is the flush epoch a flush sets (flushes.py)
            assert [key for key in server.keys(f"{prefix}:*") if not key.startswith(bells) and key != epoch] == []
            assert server.exists(f"{prefix}x:q:foreign", f"other:{prefix}:q:foreign") == 2
            server.delete(f"{prefix}x:q:foreign", f"other:{prefix}:q:foreign")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channels[0]), 0.3)

    run(closing(layer, body()))


@pytest.mark.parametrize("config, complaint", [
    ({"hosts": "redis://127.0.0.1:6379"}, "must be a list"),
    ({"hosts": []}, "empty"),
    ({"hosts": ["http://127.0.0.1:6379"]}, "scheme"),
    ({"hosts": [("127.0.0.1", "6379")]}, "(host: str, port: int)"),
    ({"hosts": [("127.0.0.1", 6379, 0)]}, "bad entry in hosts"),
    ({"hosts": [{"address": "redis://127.0.0.1:6379", "no_such_option": 1}]}, "no_such_option"),
    ({"hosts": [{"db": 1}]}, "needs an 'address'"),
    ({"hosts": ["redis://127.0.0.1:6379", ("127.0.0.1", 6379)]}, "more than once"),
    ({"hosts": ["redis://127.0.0.1:6379"], "sentinels": []}, "unknown config key"),
    ({"hosts": ["redis://127.0.0.1:6379"], "prefix": ""}, "prefix"),
    ({"hosts": ["redis://127.0.0.1:6379"], "symmetric_encryption_keys": "one key"}, "list of keys"),
    ({"hosts": ["redis://127.0.0.1:6379"], "capacity": 0}, "capacity"),
    ({"hosts": ["redis://127.0.0.1:6379"], "reconnect_timeout": 0}, "reconnect_timeout"),
])
def test_bad_config_raises_layer_config_error_saying_what_is_wrong(config, complaint):
    with pytest.raises(LayerConfigError, match=None) as caught:
        RedisChannelLayer(**config)
    assert complaint in str(caught.value)


def test_every_host_form_of_channels_redis_is_accepted():
    layer = RedisChannelLayer(hosts=[
        "redis://127.0.0.1:7001/2", ("127.0.0.1", 7002), ["127.0.0.1", 7003],
        {"address": "redis://127.0.0.1:7004"}, {"address": ("127.0.0.1", 7005), "password": "x"},
        {"host": "127.0.0.1", "port": 7006},
    ])
    assert layer.ring.nodes == ("127.0.0.1:7001/2", "127.0.0.1:7002/0", "127.0.0.1:7003/0",
                                "127.0.0.1:7004/0", "127.0.0.1:7005/0", "127.0.0.1:7006/0")
    assert layer.extensions == ["groups", "flush", "statistics"] and layer.group_expiry == 86400
    assert layer.message_size_limit > 1_000_000


def test_replies_are_parsed_by_hiredis_when_it_is_installed(redis_urls):
    layer = layer_on(redis_urls)

    async def reader_type():
        await layer.send(fresh(), {"n": 1})
        shard = layer._loops.current().shards[0]
        return type(shard._commands._reader)

    reader = run(closing(layer, reader_type()))
    hiredis_installed = importlib.util.find_spec("hiredis") is not None
    assert layer.uses_hiredis == hiredis_installed
    assert (reader.__module__.split(".")[0] == "hiredis") == hiredis_installed, reader


# --- the multiplexed connection ----------------------------------------------------------------

def test_callers_cancelled_mid_command_do_not_shift_the_replies_of_the_others(redis_urls):
    """Replies are matched to commands by order on a shared socket: a caller that stops waiting
    must still consume its reply, or later callers get their neighbours' (here: "full" for a
    send to an empty channel, "queued" for one to a full channel)."""
    layer = layer_on(redis_urls, capacity=1)
    full = fresh("full")
    empties = [fresh("empty") for _ in range(200)]

    async def send(channel, n):
        try:
            await layer.send(channel, {"n": n})
            return "queued"
        except ChannelFull:
            return "full"

    async def body():
        await layer.send(full, {"n": -1})  # full from now on; the connection is open, so the
        tasks = []                          # cancels below land while commands are in flight
        for n, empty in enumerate(empties):
            tasks.append(asyncio.ensure_future(send(full, n)))
            tasks.append(asyncio.ensure_future(send(empty, n)))
        await asyncio.sleep(0)
        for task in tasks[::3]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        outcomes = [(n % 2, task.result()) for n, task in enumerate(tasks) if not task.cancelled()]
        assert outcomes and all(outcome == ("full" if odd == 0 else "queued") for odd, outcome in outcomes)
        assert [odd for odd, _ in outcomes].count(1) > 50
        for n, empty in enumerate(empties[:20]):  # and the connection still answers correctly
            if not tasks[2 * n + 1].cancelled():
                assert await asyncio.wait_for(layer.receive(empty), CALL_LIMIT) == {"n": n}

    run(closing(layer, body()))


def test_concurrent_operations_share_one_connection_per_shard(redis_shard_urls):
    layer = layer_on(redis_shard_urls, capacity=1000)
    servers = [raw(url) for url in redis_shard_urls]

    async def body():
        before = [len(server.client_list()) for server in servers]
        await asyncio.gather(*(layer.send(fresh(), {"n": n}) for n in range(300)))
        after = [len(server.client_list()) for server in servers]
        assert [a - b for a, b in zip(after, before)] == [1, 1, 1], (before, after)

    run(closing(layer, body()))


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_the_pure_python_reply_reader_reads_what_hiredis_reads(chunk):
    """Used when hiredis is not installed: every reply form, fed in pieces of any size."""
    from redis.exceptions import ResponseError

    from reference_layers.redis.resp import ReplyReader

    stream = (b"+OK\r\n:-42\r\n$5\r\nhe\r\nl\r\n$-1\r\n*-1\r\n*0\r\n-NOSCRIPT no script\r\n"
              b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n$3\r\nend\r\n")
    reader, replies = ReplyReader(), []
    for start in range(0, len(stream), chunk):
        reader.feed(stream[start:start + chunk])
        while (reply := reader.gets()) is not False:
            replies.append(reply)
    error = replies.pop(6)
    assert isinstance(error, ResponseError) and str(error) == "NOSCRIPT no script"
    assert replies == [b"OK", -42, b"he\r\nl", None, None, [], [1, [b"a", b""], b"end"]]
