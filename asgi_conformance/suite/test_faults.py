"""FAULT-*: the layer in bad weather. Its server unreachable, restarted, paused, cut off, failed over.

These run only when the plugin started the server (``--asgi-server``) and ``--asgi-faults`` is
given (the ``asgi_server`` fixture skips them otherwise, saying which is missing), and after
every other test of the run. Every layer call under a fault is bounded by the fault timeout
(:func:`within_fault_timeout`), so a hanging layer FAILs saying which call hung and when;
messages are numbered, so a loss or a duplicate is named by its number. Restarts cost seconds
(RabbitMQ: 5-7 s), so each test restarts at most once. Traffic through a pause or dropped
connections (FAULT-4, FAULT-5) is in ``test_fault_traffic``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from asgi_conformance.faults import (
    FAILOVER_WINDOW,
    FAULT_TAG,
    RECOVERY_WINDOW,
    RETRY_PAUSE,
    TRAFFIC_AFTER_FAULT,
    TRAFFIC_BEFORE_FAULT,
    TRAFFIC_PACE,
    Delivery,
    ServerUnderTest,
    error_text,
    no_more_than_recorded,
    recovered_within,
    room_for_traffic,
    stop_receiving,
    until_all_arrived,
    within_fault_timeout,
)
from asgi_conformance.runner import LayerPool, requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    any_channel,
    current_settings,
    expect_message,
    fresh_group,
    numbered_message,
    offers,
    require,
)

if TYPE_CHECKING:
    from asgi_conformance.peer import Peer, PeerGroup

async def _round_trip(layer: Layer, channel: str, number: int, phase: str) -> None:
    """Send message ``number`` and receive it back, each call under the fault timeout."""
    message = numbered_message(number, FAULT_TAG)
    await within_fault_timeout(layer.send(channel, message), "send()", phase)
    got = await within_fault_timeout(layer.receive(channel), "receive()", phase)
    assert got == message, f"{phase}: sent {message!r}, received {got!r}"


# --- FAULT-1 ---------------------------------------------------------------------------------

CALLS: dict[str, Callable[[Layer, str], Awaitable[Any]]] = {
    "send": lambda layer, channel: layer.send(channel, numbered_message(0, FAULT_TAG)),
    "receive": lambda layer, channel: layer.receive(channel),
    "group_send": lambda layer, channel: layer.group_send(fresh_group(), numbered_message(0, FAULT_TAG)),
}


@requirement("FAULT-1")
@pytest.mark.parametrize("call", list(CALLS))
async def test_with_no_server_listening_each_call_fails_naming_the_address(
        call: str, layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    if call == "group_send":
        require(asgi_target, "groups")
    nowhere = asgi_server.unreachable()
    layer = layers.make(**nowhere.config)
    channel = "asgi-test.unreachable" if offers(asgi_target, "normal-channels") else "asgi-test.unreachable!x"
    phase = f"with nothing listening at {nowhere.config}"
    try:
        result = await within_fault_timeout(CALLS[call](layer, channel), f"{call}()", phase)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error will do, if it says where
        text = error_text(exc)
        assert nowhere.named_in(text), (
            f"{call}() failed {phase}, but its error names no port of {list(nowhere.ports)}: {text}")
        return
    raise AssertionError(f"{call}() returned {result!r} {phase}: it must fail")


# --- FAULT-2 ---------------------------------------------------------------------------------

@requirement("FAULT-2")
async def test_after_a_restart_the_same_layer_serves_sends_and_receives_again(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    layer = layers.make()
    channel = await any_channel(layer, asgi_target, "fault2")
    await _round_trip(layer, channel, 0, "before the restart")
    await asgi_server.restart()

    numbers = itertools.count(1)
    probe = await within_fault_timeout(any_channel(layer, asgi_target, "fault2-probe"), "new_channel()",
                                       "after the restart")

    async def attempt() -> None:
        await layer.send(probe, numbered_message(next(numbers), FAULT_TAG))
        await asyncio.wait_for(layer.receive(probe), current_settings().delivery_timeout)

    await recovered_within(RECOVERY_WINDOW, attempt, "send() then receive()", "after the restart")
    for number in range(100, 105):  # and it goes on serving, without a hitch
        await _round_trip(layer, channel, number, "once recovered from the restart")


# --- FAULT-3 ---------------------------------------------------------------------------------

@requirement("FAULT-3")
async def test_a_receive_waiting_through_a_restart_ends(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    layer = layers.make()
    channel = await any_channel(layer, asgi_target, "fault3")
    await _round_trip(layer, channel, 0, "before the restart")
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.wait({waiting}, timeout=current_settings().quiet_period)
    assert not waiting.done(), f"a receive on an empty channel ended before the restart: {waiting!r}"
    await asgi_server.restart()

    sender = layers.make()  # another client, built after the restart, sends to the waiting one
    sent: list[Message] = []

    async def send_one() -> None:
        message = numbered_message(len(sent) + 1, FAULT_TAG)
        await sender.send(channel, message)
        sent.append(message)

    await recovered_within(RECOVERY_WINDOW, send_one, "send() from a new layer", "after the restart")
    timeout = asgi_server.fault_timeout
    await asyncio.wait({waiting}, timeout=timeout)
    if not waiting.done():
        waiting.cancel()
        raise AssertionError(f"hung for {timeout:g} s in receive() after the restart: it began waiting before "
                             f"the restart, and {sent[-1]!r}, sent after recovery, never reached it")
    if waiting.cancelled():
        raise AssertionError("the receive waiting through the restart was cancelled by the layer; "
                             "it must return a message or raise an error")
    if waiting.exception() is None:  # else: a clear error ended it, which the rule allows
        assert waiting.result() in sent, (
            f"the receive waiting through the restart returned {waiting.result()!r}, which was never sent "
            f"after it (sent: {sent})")


# --- FAULT-6 ---------------------------------------------------------------------------------

@requirement("FAULT-6", needs=["groups"])
async def test_group_memberships_survive_a_restart_that_lost_the_servers_state(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    layer = layers.make()
    member = await layer.new_channel()
    group = fresh_group("fault6")
    await within_fault_timeout(layer.group_add(group, member), "group_add()", "before the restart")
    await within_fault_timeout(layer.group_send(group, numbered_message(0, FAULT_TAG)), "group_send()", "before the restart")
    assert await expect_message(layer, member) == numbered_message(0, FAULT_TAG)
    await asgi_server.restart()

    probe = await within_fault_timeout(any_channel(layer, asgi_target, "fault6-probe"), "new_channel()",
                                       "after the restart")
    numbers = itertools.count(1)

    async def round_trip() -> None:
        await layer.send(probe, numbered_message(next(numbers), FAULT_TAG))
        await asyncio.wait_for(layer.receive(probe), current_settings().delivery_timeout)

    await recovered_within(RECOVERY_WINDOW, round_trip, "send() then receive()", "after the restart")
    after = numbered_message(1000, FAULT_TAG)
    await within_fault_timeout(layer.group_send(group, after), "group_send()", "once recovered from the restart")
    try:
        got = await expect_message(layer, member)
    except AssertionError as exc:
        raise AssertionError(f"the membership made before the restart was lost: group_send after recovery "
                             f"never reached its member ({exc})") from None
    assert got == after, f"the member got {got!r}, expected {after!r}"


# --- FAULT-7 ---------------------------------------------------------------------------------

@requirement("FAULT-7")
async def test_after_a_failover_sends_and_receives_resume(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest) -> None:
    asgi_server.require("failover")
    layer = layers.make()
    channel = await any_channel(layer, asgi_target, "fault7")
    await _round_trip(layer, channel, 0, "before the failover")
    await asgi_server.failover()
    numbers = itertools.count(1)

    async def round_trip() -> None:
        await layer.send(channel, numbered_message(next(numbers), FAULT_TAG))
        await asyncio.wait_for(layer.receive(channel), current_settings().delivery_timeout)

    await recovered_within(FAILOVER_WINDOW, round_trip, "send() then receive()", "after the failover")


# --- FAULT-8 ---------------------------------------------------------------------------------

SENDING_PEERS = 2


@requirement("FAULT-8", needs=["cross-process"])
async def test_peers_sending_through_a_restart_keep_their_order_and_double_nothing(
        layers: LayerPool, asgi_target: LayerTarget, asgi_server: ServerUnderTest, asgi_peers: PeerGroup) -> None:
    from asgi_conformance.peer.errors import PeerCommandError  # only this test needs peers

    layer = layers.make(**room_for_traffic(asgi_target))
    peers = await asgi_peers.astart_many(SENDING_PEERS, **room_for_traffic(asgi_target))
    mine = await within_fault_timeout(layer.new_channel(), "new_channel()", "before the restart")
    deliveries = {peer.name: Delivery(sender=peer.name) for peer in peers}
    must_arrive: dict[str, list[int]] = {peer.name: [] for peer in peers}
    warm = [asyncio.Event() for _ in peers]
    restarted = asyncio.Event()
    arrived = asyncio.Event()
    stopping = asyncio.Event()
    receive_errors: list[str] = []
    loop = asyncio.get_running_loop()

    async def keep_sending(peer: Peer, warmed: asyncio.Event) -> None:
        delivery = deliveries[peer.name]
        recovered_by = None
        for seq in itertools.count():
            began_after_restart = restarted.is_set()
            if began_after_restart and recovered_by is None:
                recovered_by = loop.time() + RECOVERY_WINDOW
            try:
                await peer.acall("send", {"channel": mine, "message": {**numbered_message(seq, FAULT_TAG), "sender": peer.name}},
                                 timeout=asgi_server.fault_timeout)
                delivery.returned.append(seq)
                if began_after_restart:
                    must_arrive[peer.name].append(seq)
            except PeerCommandError as exc:  # the layer raised in the peer: it may, while the server is down
                delivery.raised[seq] = str(exc).splitlines()[0]
            if seq + 1 == TRAFFIC_BEFORE_FAULT:
                warmed.set()
            if len(must_arrive[peer.name]) >= TRAFFIC_AFTER_FAULT:
                return
            if recovered_by is not None and not must_arrive[peer.name] and loop.time() > recovered_by:
                raise AssertionError(f"{peer.name}'s sends still failed {RECOVERY_WINDOW:g} s after the restart: "
                                     f"{delivery.raised[seq]}")
            await asyncio.sleep(TRAFFIC_PACE)

    async def receive_all() -> None:
        while not stopping.is_set():
            try:
                message = await layer.receive(mine)
            except Exception as exc:  # noqa: BLE001 - while the server is down a receive may fail
                receive_errors.append(error_text(exc))
                await asyncio.sleep(RETRY_PAUSE)
                continue
            record(message)
            arrived.set()

    def record(message: Any) -> None:
        deliveries[message["sender"]].received.append(message["index"])

    async def restart_when_warm() -> None:
        await asyncio.gather(*(event.wait() for event in warm))
        await asgi_server.restart()
        restarted.set()

    receiving = asyncio.ensure_future(receive_all())
    try:
        await asyncio.gather(restart_when_warm(), *(keep_sending(peer, event) for peer, event in zip(peers, warm)))
        for name, delivery in deliveries.items():
            await until_all_arrived(delivery, must_arrive[name], arrived, "restart")
    finally:
        await stop_receiving(receiving, stopping)
    await no_more_than_recorded(layer, mine, record)
    problems = [problem for name, delivery in deliveries.items()
                for problem in delivery.problems(must_arrive[name])]
    if problems and receive_errors:
        problems.append(f"receive() raised {len(receive_errors)} time(s), last: {receive_errors[-1]}")
    assert not problems, "; ".join(problems)
