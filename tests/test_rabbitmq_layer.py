"""RabbitMQChannelLayer on a real broker: what the conformance suite cannot see.

Capacity enforced by the broker under senders in two processes, a broker restart mid-traffic,
group memberships across a restart, failover to the second URL (two brokers, and a real
two-node Erlang cluster), cleanup after close(), time limits on an unreachable broker, and
config errors. Uses the session broker of conftest.py (``rabbitmq_broker``, ``rabbitmq_url``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import subprocess
import sys

import pika
import pika.exceptions
import pytest

from reference_layers.base import ChannelFull, LayerConfigError
from reference_layers.core.statistics import ConnectionState
from reference_layers.rabbitmq import BrokerUnavailable, RabbitMQChannelLayer
from tests.helpers import GENEROUS, fresh, run

CAPACITY = 15


# --- capacity: the broker counts, whoever sends --------------------------------------------------

def _fill_from_another_process(url, channel, attempts, ready, go, results):
    """Child process: connect, say ready, then send ``attempts`` messages as fast as it can."""
    async def main():
        layer = RabbitMQChannelLayer(url=url, capacity=CAPACITY)
        await layer.send(fresh("warm-up"), {"type": "warm.up"})  # connected before the race
        ready.set()
        go.wait()
        accepted = refused = 0
        for index in range(attempts):
            try:
                await layer.send(channel, {"type": "fill", "index": index})
                accepted += 1
            except ChannelFull:
                refused += 1
        await layer.close()
        return accepted, refused

    results.put(asyncio.run(main()))


def test_capacity_holds_under_concurrent_senders_in_two_processes(rabbitmq_url):
    context = multiprocessing.get_context("spawn")
    channel, attempts = fresh("shared"), 40
    go, results = context.Event(), context.Queue()
    readies = [context.Event() for _ in range(2)]
    workers = [context.Process(target=_fill_from_another_process,
                               args=(rabbitmq_url, channel, attempts, ready, go, results))
               for ready in readies]
    for worker in workers:
        worker.start()
    try:
        for ready in readies:
            assert ready.wait(GENEROUS), "a sender process did not connect"
        go.set()
        outcomes = [results.get(timeout=GENEROUS) for _ in workers]
    finally:
        for worker in workers:
            worker.join(GENEROUS)
            if worker.is_alive():
                worker.kill()
    assert sum(accepted for accepted, _ in outcomes) == CAPACITY, outcomes
    assert sum(refused for _, refused in outcomes) == 2 * attempts - CAPACITY, outcomes

    async def drain():
        layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=CAPACITY)
        try:
            got = [await asyncio.wait_for(layer.receive(channel), GENEROUS) for _ in range(CAPACITY)]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(layer.receive(channel), 1.0)
            return got
        finally:
            await layer.close()

    assert len(run(drain())) == CAPACITY


def _send_until_full(url, channel, capacity, limit, ready, go, results):
    """Child process: connect, say ready, then send to ``channel`` until ChannelFull (or
    ``limit`` sends) and report how many the broker accepted."""
    async def main():
        layer = RabbitMQChannelLayer(url=url, capacity=capacity)
        await layer.send(fresh("warm-up"), {"type": "warm.up"})  # connected before the race
        ready.set()
        go.wait()
        accepted = 0
        try:
            for index in range(limit):
                await layer.send(channel, {"type": "fill", "index": index})
                accepted += 1
        except ChannelFull:
            pass
        await layer.close()
        return accepted

    results.put(asyncio.run(main()))


def test_a_slow_receive_loop_does_not_stretch_capacity_for_other_senders(rabbitmq_url):
    """A receive loop here takes one message, then stalls while another process fills the
    channel: the broker may have pushed us only what a receive waited for, so the sender
    meets ChannelFull after capacity + 1 (the one taken) and nothing is lost."""
    capacity, limit = 10, 400
    channel = fresh("slow")
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Event(), context.Event(), context.Queue()
    sender = context.Process(target=_send_until_full,
                             args=(rabbitmq_url, channel, capacity, limit, ready, go, results))
    sender.start()

    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_url, capacity=capacity)
        loop = asyncio.get_running_loop()
        sender_done, got = asyncio.Event(), []

        async def slow_receive_loop():
            got.append(await layer.receive(channel))  # the one receive waiting while B sends
            await sender_done.wait()
            while len(got) < accepted:
                got.append(await layer.receive(channel))

        try:
            await layer.send(fresh("warm-up"), {"type": "warm.up"})
            receiving = asyncio.ensure_future(slow_receive_loop())
            assert await loop.run_in_executor(None, ready.wait, GENEROUS), "the sender did not connect"
            go.set()
            accepted = await loop.run_in_executor(None, results.get, True, GENEROUS)
            sender_done.set()
            await asyncio.wait_for(receiving, GENEROUS)
            return accepted, got
        finally:
            await layer.close()

    try:
        accepted, got = run(scenario())
    finally:
        sender.join(GENEROUS)
        if sender.is_alive():
            sender.kill()
    assert accepted <= capacity + 1, f"the sender got {accepted} messages into a channel of capacity {capacity}"
    assert accepted == capacity + 1, accepted  # and the broker did refuse only at capacity
    assert [message["index"] for message in got] == list(range(accepted)), "lost or reordered"
    assert _queue_state(rabbitmq_url, f"asgi:q:{channel}") == (0, 0), "left messages or a consumer behind"


# --- a broker restart in the middle of traffic ----------------------------------------------------

def test_sends_and_receives_resume_after_a_broker_restart(rabbitmq_broker):
    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_broker.url, timeout=GENEROUS)
        channel = await layer.new_channel()
        received: list[tuple[str, int]] = []
        arrived = {"before": asyncio.Event(), "after": asyncio.Event()}

        async def receiver():
            while True:
                message = await layer.receive(channel)
                received.append((message["phase"], message["n"]))
                counts = {p: sum(1 for q, _ in received if q == p) for p in arrived}
                if counts["before"] >= 10:
                    arrived["before"].set()
                if counts["after"] >= 10:
                    arrived["after"].set()

        receiving = asyncio.create_task(receiver())
        try:
            for n in range(10):
                await layer.send(channel, {"phase": "before", "n": n})
            await asyncio.wait_for(arrived["before"].wait(), GENEROUS)

            restarting = asyncio.ensure_future(asyncio.to_thread(rabbitmq_broker.restart))
            n = 0
            while not restarting.done():  # traffic while the broker goes down and comes back
                try:
                    await asyncio.wait_for(layer.send(channel, {"phase": "during", "n": n}), GENEROUS)
                except BrokerUnavailable:
                    pass  # allowed while the broker is down: the call says so instead of hanging
                n += 1
                await asyncio.sleep(0.05)
            await restarting

            for n in range(10):  # after it is back, every send goes through
                await asyncio.wait_for(layer.send(channel, {"phase": "after", "n": n}), GENEROUS)
            await asyncio.wait_for(arrived["after"].wait(), GENEROUS)
            assert not receiving.done(), "the waiting receive failed across the restart"
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            await layer.close()
        assert len(received) == len(set(received)), "a message was delivered twice"
        assert [n for phase, n in received if phase == "after"] == list(range(10))

    run(scenario())


def test_group_memberships_this_process_added_survive_a_broker_restart(rabbitmq_broker):
    """The restarted broker has lost every queue, memberships too: the layer adds again what
    it added and did not discard (nor delete with its process queue at close()), so group_send
    reaches the same members as before."""
    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_broker.url, timeout=GENEROUS)
        group, normal, discarded = fresh("group"), fresh("member"), fresh("left")
        try:
            specific = await layer.new_channel()
            for channel in (specific, normal, discarded):
                await layer.group_add(group, channel)
            await layer.group_discard(group, discarded)

            await asyncio.to_thread(rabbitmq_broker.restart)

            await asyncio.wait_for(layer.group_send(group, {"n": 1}), GENEROUS)
            assert await asyncio.wait_for(layer.receive(specific), GENEROUS) == {"n": 1}
            assert await asyncio.wait_for(layer.receive(normal), GENEROUS) == {"n": 1}
            with pytest.raises(asyncio.TimeoutError):  # discarded before the restart: not added again
                await asyncio.wait_for(layer.receive(discarded), 1.0)

            await layer.close()  # deletes its process queue and that queue's memberships for good
            await asyncio.to_thread(rabbitmq_broker.restart)
            await asyncio.wait_for(layer.send(normal, {"n": 2}), GENEROUS)  # connects again, restores
            url = rabbitmq_broker.url
            assert await asyncio.to_thread(_queue_depth, url, f"asgi:m:{group}:{normal}") == 0
            assert await asyncio.to_thread(_queue_depth, url, f"asgi:m:{group}:{specific}") is None, \
                "a membership close() deleted came back after a restart"
        finally:
            await layer.flush()
            await layer.close()

    run(scenario())


# --- two nodes: losing the first moves the layer to the second ------------------------------------

@pytest.fixture
def standby_broker():
    """A second, independent broker standing in for the first node of a two-node cluster."""
    from asgi_conformance import servers

    with servers.rabbitmq_server() as handle:
        if not handle.restartable:
            pytest.fail("the failover test needs a broker it can stop (ASGI_TEST_RABBITMQ_URL is set)")
        yield handle


def test_losing_the_first_node_moves_the_layer_to_the_second(standby_broker, rabbitmq_url):
    first = standby_broker.url

    async def scenario():
        layer = RabbitMQChannelLayer(urls=[first, rabbitmq_url], timeout=GENEROUS)
        try:
            channel = fresh("failover")
            await layer.send(channel, {"n": 1})
            assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 1
            assert layer.broker_url == first

            await asyncio.to_thread(standby_broker[0].stop)

            await asyncio.wait_for(layer.send(channel, {"n": 2}), GENEROUS)
            assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 2
            assert layer.broker_url == rabbitmq_url
        finally:
            await layer.close()

    run(scenario())


@pytest.fixture
def rabbitmq_cluster():
    """A real two-node Erlang cluster from the machine's binaries."""
    from tests.rabbitmq_nodes import local_rabbitmq_cluster

    with local_rabbitmq_cluster(2) as cluster:
        yield cluster


def test_losing_a_node_of_an_erlang_cluster_moves_the_layer_and_its_groups_to_the_other(rabbitmq_cluster):
    first, second = rabbitmq_cluster.urls

    async def scenario():
        layer = RabbitMQChannelLayer(urls=[first, second], timeout=GENEROUS)
        channel, group = fresh("cluster"), fresh("cluster-group")
        try:
            specific = await layer.new_channel()
            await layer.group_add(group, specific)
            await layer.send(channel, {"n": 1})
            assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 1
            assert layer.broker_url == first
            # one cluster: the second node knows the queue the first one holds
            assert await asyncio.to_thread(_queue_depth, second, f"asgi:q:{channel}") == 0

            await asyncio.to_thread(rabbitmq_cluster[0].stop)  # its queues went with it

            await asyncio.wait_for(layer.send(channel, {"n": 2}), GENEROUS)
            assert (await asyncio.wait_for(layer.receive(channel), GENEROUS))["n"] == 2
            assert layer.broker_url == second
            await asyncio.wait_for(layer.group_send(group, {"n": 3}), GENEROUS)
            assert (await asyncio.wait_for(layer.receive(specific), GENEROUS))["n"] == 3
        finally:
            await layer.close()

    run(scenario())


# --- an unreachable broker: a clear error, no hang ---------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


def test_every_call_fails_clearly_when_no_broker_answers():
    layer = RabbitMQChannelLayer(url=f"amqp://guest:guest@127.0.0.1:{_closed_port()}/%2F", timeout=1)

    async def scenario():
        try:
            with pytest.raises(BrokerUnavailable, match="no RabbitMQ node answered"):
                await asyncio.wait_for(layer.send("somewhere", {"type": "x"}), GENEROUS)
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(layer.receive("somewhere"), GENEROUS)
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(layer.group_add("g", "somewhere"), GENEROUS)
        finally:
            await layer.close()

    run(scenario())


# --- cleanup ---------------------------------------------------------------------------------------

def _queue_state(url: str, queue: str) -> tuple[int, int] | None:
    """(messages, consumers) of ``queue`` by a passive declare (no management plugin), None
    if it does not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method = connection.channel().queue_declare(queue, passive=True).method
        return method.message_count, method.consumer_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return None
    finally:
        connection.close()


def _queue_depth(url: str, queue: str) -> int | None:
    state = _queue_state(url, queue)
    return None if state is None else state[0]


def _exchange_exists(url: str, exchange: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().exchange_declare(exchange, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return False
    finally:
        connection.close()


def test_close_leaves_only_what_normal_channels_still_hold(rabbitmq_url):
    prefix = fresh("cleanup").replace("test.", "c")
    layer = RabbitMQChannelLayer(url=rabbitmq_url, prefix=prefix)
    normal, read, group = fresh("normal"), fresh("read"), fresh("group")

    async def scenario():
        specific = await layer.new_channel()
        await layer.send(specific, {"type": "unread"})
        await layer.group_add(group, specific)
        await layer.group_send(group, {"type": "unread copy"})
        await layer.send(normal, {"type": "kept"})
        await layer.send(read, {"type": "read"})
        assert await asyncio.wait_for(layer.receive(read), GENEROUS) == {"type": "read"}
        with pytest.raises(asyncio.TimeoutError):  # leaves a consumer on the queue until close()
            await asyncio.wait_for(layer.receive(read), 0.01)
        await layer.close()
        return specific

    specific = run(scenario())
    process_queue = f"{prefix}:q:{specific[: specific.index('!') + 1]}"
    membership = f"{prefix}:m:{group}:{specific}"
    assert _queue_depth(rabbitmq_url, process_queue) is None, "the process queue outlived close()"
    assert _queue_depth(rabbitmq_url, membership) is None, "a membership of a closed process outlived close()"
    assert _queue_depth(rabbitmq_url, f"{prefix}:q:{normal}") == 1, "the normal channel lost its message"
    assert _queue_state(rabbitmq_url, f"{prefix}:q:{read}") == (0, 0), "close() left a consumer behind"
    for exchange in (f"{prefix}:groups", f"{prefix}:control"):
        assert not _exchange_exists(rabbitmq_url, exchange), f"the layer left exchange {exchange!r}"

    async def tidy():  # the layer is usable after close(): flush removes the rest
        layer2 = RabbitMQChannelLayer(url=rabbitmq_url, prefix=prefix)
        await layer2.flush()
        await layer2.close()

    run(tidy())
    for queue in (normal, read):
        assert _queue_depth(rabbitmq_url, f"{prefix}:q:{queue}") is None, "flush left a channel queue"


# --- statistics(): what the broker can tell -----------------------------------------------------

def test_statistics_see_the_connection_lost_to_a_restart_and_connected_again(rabbitmq_broker):
    layer = RabbitMQChannelLayer(url=rabbitmq_broker.url, prefix=fresh("stats").replace("rmq-test.", "s"))
    channel = fresh("stats")

    async def scenario():
        before = (await layer.statistics([])).connections
        await layer.send(channel, {"type": "lost with the restart"})
        connected = (await layer.statistics([])).connections
        restarting = asyncio.ensure_future(asyncio.to_thread(rabbitmq_broker.restart))
        states = []
        while not restarting.done():  # statistics([]) asks the broker nothing: it never reconnects
            states.append(set((await layer.statistics([])).connections.values()))
            await asyncio.sleep(0.01)
        await restarting
        states.append(set((await layer.statistics([])).connections.values()))
        await asyncio.wait_for(layer.send(channel, {"type": "after"}), GENEROUS)
        again = await layer.statistics([channel])
        await layer.flush()
        await layer.close()
        return before, connected, states, again

    before, connected, states, again = run(scenario())
    assert set(before.values()) == {ConnectionState.NOT_CONNECTED}
    assert set(connected.values()) == {ConnectionState.CONNECTED}
    assert {ConnectionState.LOST} in states, f"the lost connection was never reported: {states}"
    assert states[-1] == {ConnectionState.LOST}, "nothing connects again until a call needs the broker"
    assert set(again.connections.values()) == {ConnectionState.CONNECTED}
    assert again.channels[channel].waiting == 1  # the restart lost the first; the second is there


def test_statistics_of_every_channel_after_many_of_their_queues_went(rabbitmq_url):
    """statistics() with no channels asks the broker about every queue the prefix registered.
    Queues deleted since (their layer objects closed) are each a refused passive declare that
    closes the admin channel: the others must still be answered, not fail for it."""
    prefix = fresh("gone").replace("rmq-test.", "g")

    async def scenario():
        for _ in range(8):  # each object's process queue is made, registered, then deleted by close()
            gone = RabbitMQChannelLayer(url=rabbitmq_url, prefix=prefix)
            channel = await gone.new_channel()
            await gone.send(channel, {"type": "t"})
            await gone.receive(channel)
            await gone.close()
        layer = RabbitMQChannelLayer(url=rabbitmq_url, prefix=prefix)
        try:
            await layer.send("kept", {"type": "t"})
            stats = await layer.statistics()
        finally:
            await layer.flush()
            await layer.close()
        return stats

    stats = run(scenario())
    assert stats.channels["kept"].waiting == 1
    assert len(stats.channels) == 9
    assert sum(row.waiting for row in stats.channels.values()) == 1


def test_statistics_on_the_command_line(rabbitmq_url):
    prefix = fresh("cli").replace("rmq-test.", "c")
    layer = RabbitMQChannelLayer(url=rabbitmq_url, prefix=prefix)
    channel = fresh("cli")

    async def fill():
        await layer.send(channel, {"type": "t"})
        await layer.send(channel, {"type": "t"})
        await layer.close()

    async def empty():
        await layer.flush()
        await layer.close()

    run(fill())
    try:
        printed = subprocess.run(
            [sys.executable, "-m", "reference_layers.rabbitmq", "--stats", "--url", rabbitmq_url,
             "--prefix", prefix], capture_output=True, text=True, timeout=GENEROUS, check=True).stdout
    finally:
        run(empty())
    answer = json.loads(printed)
    assert answer["channels"] == {channel: {"waiting": 2, "oldest_age": None}}
    assert list(answer["connections"].values()) == ["connected"]
    assert "guest:***@" in next(iter(answer["connections"])), "the password was printed"


# --- config errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("config, words", [
    ({"url": "redis://localhost:6379"}, "not an AMQP URL"),
    ({"url": 5672}, "must be a str"),
    ({"urls": "amqp://localhost"}, "must be a list"),
    ({"urls": []}, "empty"),
    ({"url": "amqp://a", "urls": ["amqp://b"]}, "either url or urls"),
    ({"prefix": "has:colon"}, "prefix"),
    ({"timeout": 0}, "timeout"),
    ({"heartbeat": -1}, "heartbeat"),
    ({"capacity": 0}, "capacity"),
    ({"expiry": "soon"}, "expiry"),
    ({"hosts": ["amqp://localhost"]}, "unknown config key"),
])
def test_bad_config_raises_layer_config_error(config, words):
    with pytest.raises(LayerConfigError, match=words):
        RabbitMQChannelLayer(**config)


def test_a_good_config_builds_without_touching_the_network():
    layer = RabbitMQChannelLayer(urls=["amqps://user:pw@node1:5671/%2F", "amqp://node2"], prefix="app",
                                 symmetric_encryption_keys=["secret"], channel_capacity={"http.*": 5})
    assert layer.broker_url is None
    assert layer.extensions == ["groups", "flush", "statistics"]
    assert layer.group_expiry == 86400 and layer.message_size_limit > 0


@pytest.mark.parametrize("flushed", [False, True])
def test_a_message_a_loop_held_acked_goes_to_the_next_loop_unless_its_queue_was_flushed(rabbitmq_url, flushed):
    """A loop holds a message of a queue with no group members acked when a receive is cancelled
    just as it was handed it (rare, so it is put there by hand): the object's next loop gets it,
    unless a flush deleted the queue meanwhile (checked on its connect; no copies queue to ask)."""
    import time

    from reference_layers.rabbitmq.queue_state import Parked

    layer = RabbitMQChannelLayer(url=rabbitmq_url)
    other = RabbitMQChannelLayer(url=rabbitmq_url)

    async def first_loop() -> str:
        channel = await layer.new_channel()
        await layer.send(channel, {"n": 1})
        assert await asyncio.wait_for(layer.receive(channel), GENEROUS) == {"n": 1}  # the queue is set up here
        receiver = layer._loops.current().receiver
        receiver.state_of(layer._names.queue(channel)).parked.park_first(
            channel, Parked(layer.codec.encode({"n": "held"}), None, None, time.monotonic()))
        return channel

    channel = run(first_loop())
    if flushed:
        run(other.flush())

    async def next_loop():
        await layer.send(channel, {"n": "sent"})
        got = [await asyncio.wait_for(layer.receive(channel), GENEROUS) for _ in range(1 if flushed else 2)]
        await layer.close()
        await other.close()
        return got

    assert run(next_loop()) == ([{"n": "sent"}] if flushed else [{"n": "held"}, {"n": "sent"}])
