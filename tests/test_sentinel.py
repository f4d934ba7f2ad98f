"""Redis Sentinel: the ``redis-sentinel`` server kind, our Redis layer's Sentinel ``hosts`` form,
and the layer carrying on when the master is killed mid-traffic.

Replication is asynchronous: a send the old master acknowledged but had not passed on yet is
lost at a failover (and a pop it had not passed on may be delivered again). That cannot be
helped by a client; here it is counted and printed, never hidden, and bounded. What must hold
is everything after the promotion: no call hangs, every send that returns is delivered once,
in order.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from asgi_conformance.faults import ServerUnderTest
from asgi_conformance.requirements import REQUIREMENTS
from asgi_conformance.servers import Fault, servers_for
from asgi_conformance.servers.sentinel import MASTER_NAME, SentinelSet
from asgi_conformance.servers.sentinel_admin import info_field
from reference_layers.base import LayerConfigError
from reference_layers.redis import RedisChannelLayer
from tests.suite_runner import run_suite

pytestmark = pytest.mark.redis

OURS = "reference_layers.redis.RedisChannelLayer"
SENTINEL = "--asgi-server=redis-sentinel"
CALL_BOUND = 15.0  # seconds any one layer call may take, even through the failover
SENDERS = 4  # sender tasks, each with its own numbered, ordered sequence: several sends in flight
AFTER_PROMOTION = 40  # messages each sender sends once the failover is over: all must arrive
PACE = 0.003  # seconds between one sender's sends
LOSS_BOUND = 0.25  # of the sends acknowledged before the promotion: far above the lag of a loopback replica


@pytest.fixture(scope="module")
def sentinel_set():
    with servers_for("redis-sentinel") as servers:
        yield servers


def sentinel_layer(servers, **config) -> RedisChannelLayer:
    config.setdefault("prefix", f"s{secrets.token_hex(4)}")
    return RedisChannelLayer(hosts=servers.config_entries, **config)


# --- the hosts form ----------------------------------------------------------------------------

def _entry(**overrides):
    return {"sentinels": [("127.0.0.1", 26379)], "master_name": "mymaster", **overrides}


@pytest.mark.parametrize(("entry", "says"), [
    (_entry(master_name=None), "needs a 'master_name'"),
    (_entry(sentinels=[]), "non-empty list of (host, port) pairs"),
    (_entry(sentinels="127.0.0.1:26379"), "non-empty list of (host, port) pairs"),
    (_entry(sentinels=[("127.0.0.1", "26379")]), "each sentinel must be (host: str, port: int)"),
    (_entry(sentinel_kwargs=[1]), "'sentinel_kwargs' must be a dict"),
    (_entry(host="127.0.0.1"), "also names a server (host)"),
    (_entry(no_such_option=1), "bad connection option"),
], ids=["no-master-name", "no-sentinels", "sentinels-a-str", "port-a-str", "kwargs-a-list", "a-host-too",
        "unknown-option"])
def test_a_bad_sentinel_entry_is_refused_when_the_layer_is_built(entry, says):
    with pytest.raises(LayerConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        RedisChannelLayer(hosts=[entry])


def test_a_sentinel_entry_is_one_shard_named_by_its_master_and_sentinels_in_any_order():
    one = RedisChannelLayer(hosts=[_entry(sentinels=[("b", 2), ("a", 1)]), "redis://10.0.0.1:6379"])
    other = RedisChannelLayer(hosts=[_entry(sentinels=[["a", 1], ["b", 2]]), "redis://10.0.0.1:6379"])
    assert [a.name for a in one.addresses] == ["sentinel:mymaster@a:1,b:2/0", "10.0.0.1:6379/0"]
    assert all(one.ring.node_for(f"c{n}") == other.ring.node_for(f"c{n}") for n in range(500))
    given = _entry()
    RedisChannelLayer(hosts=[given])
    assert given == _entry(), "the layer must not change the config it was given"


# --- the server kind ---------------------------------------------------------------------------

def test_the_sentinel_kind_offers_every_fault_and_hands_out_the_channels_redis_form(sentinel_set):
    assert sentinel_set.faults == frozenset(Fault)
    (entry,) = sentinel_set.config_entries
    assert entry["master_name"] == MASTER_NAME and len(entry["sentinels"]) == 3
    handle = sentinel_set[0]
    assert isinstance(handle, SentinelSet)
    assert info_field(handle.master.port, "replication", "role") == "master"
    assert info_field(handle.replica.port, "replication", "master_link_status") == "up"


def test_fault_1_points_a_sentinel_entry_at_sentinels_nobody_runs(sentinel_set):
    nowhere = ServerUnderTest(sentinel_set, "redis-sentinel", "hosts", True).unreachable()
    (entry,) = nowhere.config["hosts"]
    (running,) = sentinel_set.config_entries
    assert entry["master_name"] == running["master_name"]
    assert sorted(port for _, port in entry["sentinels"]) == sorted(nowhere.ports)
    assert not set(nowhere.ports) & {port for _, port in running["sentinels"]}


def test_plain_and_sentinel_shards_mix_in_one_layer(sentinel_set, redis_urls):
    async def scenario():
        layer = RedisChannelLayer(hosts=[*sentinel_set.config_entries, *redis_urls], prefix=f"m{secrets.token_hex(4)}")
        try:
            channels = [f"mix.{n}" for n in range(40)]
            assert len({layer.ring.node_for(c) for c in channels}) == 2, "both shards must hold channels"
            for n, channel in enumerate(channels):
                await layer.send(channel, {"type": "mix", "n": n})
            got = [await asyncio.wait_for(layer.receive(c), CALL_BOUND) for c in channels]
            assert [m["n"] for m in got] == list(range(40))
        finally:
            await layer.flush()
            await layer.close()

    asyncio.run(scenario())


# --- the master killed mid-traffic -----------------------------------------------------------

@dataclass
class Traffic:
    """What each sender sent (by phase) and what the receiver got, as (sender, number) pairs."""

    acknowledged: set[tuple[int, int]] = field(default_factory=set)  # sends that returned before the promotion
    after: set[tuple[int, int]] = field(default_factory=set)  # sends that returned after it
    raised: list[str] = field(default_factory=list)  # sends and receives that raised (not hung)
    received: list[tuple[int, int]] = field(default_factory=list)


async def _kill_the_master_mid_traffic(servers) -> Traffic:
    layer = sentinel_layer(servers, capacity=100_000)
    channel = "traffic.one"
    traffic = Traffic()
    promoted = asyncio.Event()
    arrived = asyncio.Event()

    async def sender(index: int) -> None:
        number, left = 0, AFTER_PROMOTION
        while left:
            was_promoted = promoted.is_set()
            try:
                await asyncio.wait_for(layer.send(channel, {"type": "n", "s": index, "n": number}), CALL_BOUND)
            except asyncio.TimeoutError:
                raise AssertionError(f"send() hung for {CALL_BOUND:g} s") from None
            except Exception as exc:  # noqa: BLE001 - during the failover a send may fail: not acknowledged
                assert not was_promoted, f"a send after the promotion raised {exc!r}"
                traffic.raised.append(f"send: {exc!r}")
            else:
                (traffic.after if was_promoted else traffic.acknowledged).add((index, number))
                left -= was_promoted
            number += 1
            await asyncio.sleep(PACE)

    async def receiver() -> None:
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), CALL_BOUND)
            except asyncio.TimeoutError:
                raise AssertionError(f"receive() hung for {CALL_BOUND:g} s") from None
            except Exception as exc:  # noqa: BLE001 - may fail during the failover, never hang
                traffic.raised.append(f"receive: {exc!r}")
                continue
            traffic.received.append((message["s"], message["n"]))
            arrived.set()

    receiving = asyncio.create_task(receiver())
    try:
        senders = asyncio.gather(*(sender(i) for i in range(SENDERS)))
        while len(traffic.acknowledged) < 100:  # well under way, several sends in flight
            await asyncio.sleep(0.01)
        await asyncio.to_thread(servers.failover)
        promoted.set()
        await asyncio.wait_for(senders, CALL_BOUND * 4)
        deadline = time.monotonic() + CALL_BOUND
        while not traffic.after <= set(traffic.received) and time.monotonic() < deadline:
            arrived.clear()
            await asyncio.wait([asyncio.ensure_future(arrived.wait())], timeout=0.5)
        await asyncio.sleep(0.5)  # a late duplicate would show meanwhile
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        await layer.flush()
        await layer.close()
    return traffic


def test_killing_the_master_mid_traffic_loses_a_counted_few_and_then_everything_arrives(sentinel_set):
    traffic = asyncio.run(_kill_the_master_mid_traffic(sentinel_set))
    received = Counter(traffic.received)
    after_lost = sorted(traffic.after - set(received))
    after_doubled = sorted(m for m in traffic.after if received[m] > 1)
    lost = sorted(traffic.acknowledged - set(received))
    doubled = sorted(m for m, count in received.items() if count > 1)
    print(f"\nsentinel failover in {sentinel_set[0].last_failover_seconds:.2f} s; of "
          f"{len(traffic.acknowledged)} sends acknowledged before the promotion {len(lost)} were lost "
          f"{lost[:10]} and {len(doubled)} delivered twice; {len(traffic.raised)} calls raised; "
          f"{len(traffic.after)} sends after it all delivered once")
    assert not after_lost, f"sends after the promotion that returned but never arrived: {after_lost}"
    assert not after_doubled, f"sends after the promotion delivered twice: {after_doubled}"
    for index in range(SENDERS):  # per-sender order holds after the promotion
        after = [n for s, n in traffic.received if s == index and (s, n) in traffic.after]
        assert after == sorted(after), f"sender {index}'s messages after the promotion arrived out of order"
    assert len(lost) + len(doubled) <= LOSS_BOUND * len(traffic.acknowledged)


# --- the suite on a Sentinel set -----------------------------------------------------------------

# In the gate (about 55 s): issue 16's done-when is this suite from the README's test command.
@pytest.mark.timeout(900)
def test_our_layer_passes_the_whole_strict_suite_with_faults_on_sentinel(pytester):
    run = run_suite(pytester, OURS, SENTINEL, "--asgi-faults", timeout=800)
    assert run.result.ret == 0, "\n".join(run.result.outlines[-60:])
    not_passed = {rid: status for rid, status in run.statuses().items() if status != "PASS"}
    assert not not_passed and set(run.statuses()) == set(REQUIREMENTS), not_passed
