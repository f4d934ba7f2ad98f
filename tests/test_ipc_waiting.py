"""How a receive of the IPC layer waits: it spins briefly, yielding to its loop, then sleeps.

A receive that finds its channel empty first keeps looking for ``receive_spin`` seconds, so a
message that comes soon is taken without a kernel wake-up; a longer wait must cost no CPU.

Whether a receive armed is read from its waker's epoch (a private field): statistics() shows
what a channel holds, not how its receives wait.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from reference_layers.ipc import IPCChannelLayer
from reference_layers.ipc.spinning import PROBE_EVERY, SpinBudget
from reference_layers.ipc.wakeups import MAX_POKE, NAME_SEPARATOR, poke_datagrams

from .ipc_helpers import remove_segment, unique_prefix

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def prefix():
    name = unique_prefix("wait")
    yield name
    remove_segment(name)


async def _started_receive(layer, channel: str):
    """A receive on ``channel`` run up to its first wait, and its loop's waker."""
    receive = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    return receive, layer._wakers[asyncio.get_running_loop()]


def test_a_message_sent_while_a_receive_spins_is_taken_without_arming_it(prefix):
    """Other tasks of the loop run during the spin; a send from one of them is found by the
    spin itself: the receive never armed (no sender made a system call for it)."""
    layer = IPCChannelLayer(prefix=prefix, receive_spin=0.5)

    async def scenario():
        receive = asyncio.ensure_future(layer.receive("wait.spin"))
        for _ in range(3):
            await asyncio.sleep(0)  # turns of the loop while the receive spins
        waker = layer._wakers[asyncio.get_running_loop()]
        assert not receive.done()
        epoch_before = waker._epoch
        await layer.send("wait.spin", {"type": "test.spun"})
        message = await asyncio.wait_for(receive, 10)
        return message, waker._epoch - epoch_before

    try:
        message, arms = asyncio.run(scenario())
    finally:
        layer.close_sync()
    assert message == {"type": "test.spun"}
    assert arms == 0


def test_while_one_receive_of_a_loop_spins_another_arms_at_once(prefix):
    """Many receives of one loop waiting together (a group_send to the channels of one process)
    only take turns from each other by spinning: one spins, the others arm and sleep."""
    layer = IPCChannelLayer(prefix=prefix, receive_spin=0.5)

    async def scenario():
        first, waker = await _started_receive(layer, "wait.spinning")
        epoch_before = waker._epoch
        second = asyncio.ensure_future(layer.receive("wait.armed"))
        for _ in range(3):
            await asyncio.sleep(0)  # turns of the loop: the first still spins
        assert not first.done() and not second.done()
        arms = (waker._epoch - epoch_before) // 2  # each arm takes the next odd epoch
        await layer.send("wait.spinning", {"type": "test.first"})
        await layer.send("wait.armed", {"type": "test.second"})
        return await asyncio.wait_for(asyncio.gather(first, second), 10), arms

    try:
        messages, arms = asyncio.run(scenario())
    finally:
        layer.close_sync()
    assert [message["type"] for message in messages] == ["test.first", "test.second"]
    assert arms == 1  # the second receive's; the first spun and never armed


def test_a_receive_that_waits_past_its_spin_sleeps_without_using_cpu(prefix):
    """Waiting a second for a message costs a small fraction of a second of CPU, whatever the
    spin: after it the receive sleeps in the kernel until a sender wakes it."""
    layer = IPCChannelLayer(prefix=prefix, receive_spin=0.02)

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, lambda: asyncio.ensure_future(layer.send("wait.long", {"type": "test.late"})))
        started = time.process_time()
        message = await asyncio.wait_for(layer.receive("wait.long"), 30)
        return message, time.process_time() - started

    try:
        message, cpu_seconds = asyncio.run(scenario())
    finally:
        layer.close_sync()
    assert message == {"type": "test.late"}
    assert cpu_seconds < 0.3


def test_a_receive_without_spin_arms_at_once(prefix):
    """``receive_spin=0`` turns the spin off: a receive that finds nothing arms and sleeps."""
    layer = IPCChannelLayer(prefix=prefix, receive_spin=0)

    async def scenario():
        receive, waker = await _started_receive(layer, "wait.nospin")
        epoch_after_arming = waker._epoch
        await layer.send("wait.nospin", {"type": "test.woken"})
        return await asyncio.wait_for(receive, 10), epoch_after_arming

    try:
        message, epoch = asyncio.run(scenario())
    finally:
        layer.close_sync()
    assert message == {"type": "test.woken"}
    assert epoch > 1  # the waker's first epoch is 1; arming took a new one


def test_the_spin_budget_shrinks_after_misses_and_comes_back_after_a_catch_or_a_probe():
    """A spin that catches nothing halves the next one (down to none: on a busy machine the
    spinner only takes its sender's CPU); a catch, or the periodic full probe, restores it."""
    budget = SpinBudget(0.0002)
    assert budget.next() == 0.0002
    seen = []
    for _ in range(6):
        budget.missed()
        seen.append(budget.next())
    assert seen == [0.0001, 0.00005, 0.000025, 0.0000125, 0.0, 0.0]
    probes = [budget.next() for _ in range(PROBE_EVERY)]
    assert probes.count(0.0002) == 1 and probes.count(0.0) == PROBE_EVERY - 1
    budget.caught()
    assert budget.next() == 0.0002


def test_a_spinning_receive_does_not_disarm_another_receive_of_its_loop_on_the_channel(prefix):
    """Receive A of a loop has armed and sleeps; receive B of the same loop spins on the same
    channel (one registration for both). B's looks must leave A armed, or a message B does
    not take would never wake A."""
    layer = IPCChannelLayer(prefix=prefix, receive_spin=0.5)

    async def scenario():
        waker = layer._waker(layer._current())
        waker.spin.current = 0.0  # A arms at once
        first = asyncio.ensure_future(layer.receive("wait.two"))
        await asyncio.sleep(0)
        assert waker._epoch > 1, "receive A did not arm"
        waker.spin.current = 0.5  # B spins
        second = asyncio.ensure_future(layer.receive("wait.two"))
        await asyncio.sleep(0)
        await layer.send("wait.two", {"type": "test.one"})
        await layer.send("wait.two", {"type": "test.two"})
        return await asyncio.wait_for(asyncio.gather(first, second), 10)

    try:
        messages = asyncio.run(scenario())
    finally:
        layer.close_sync()
    assert sorted(message["type"] for message in messages) == ["test.one", "test.two"]


def test_closing_the_layer_ends_a_spinning_receive_with_a_clear_error(prefix):
    """As for a receive that sleeps: the receive fails saying the layer closed, and the
    closed segment is not read again."""
    layer = IPCChannelLayer(prefix=prefix, receive_spin=0.5)

    async def scenario():
        receive = asyncio.ensure_future(layer.receive("wait.closing"))
        await asyncio.sleep(0)
        await layer.close()
        with pytest.raises(RuntimeError, match="closed while receiving"):
            await asyncio.wait_for(receive, 10)

    asyncio.run(scenario())


def test_a_group_sends_pokes_name_every_channel_in_datagrams_of_bounded_size():
    """A waker named in a group_send gets its channels in as few datagrams as fit MAX_POKE."""
    names = [b"specific.%016x!%016x" % (n, n) for n in range(1000)]
    datagrams = list(poke_datagrams(names))
    assert len(datagrams) > 1 and all(len(d) <= MAX_POKE for d in datagrams)
    assert [name for d in datagrams for name in d.split(NAME_SEPARATOR)] == names
