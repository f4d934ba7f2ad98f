"""XP-*: messages, groups and flushes cross process boundaries; a killed process harms no one.

"A" is this test process (its layer comes from ``layers``); the other processes are peers
from ``asgi_peers``, separate interpreters building the same layer from the same dotted path
and config. Peer start-up costs about half a second, so each test starts the few it needs.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections import Counter
from typing import TYPE_CHECKING, Awaitable, Callable

from asgi_conformance.runner import LayerPool, requirement
from asgi_conformance.vocabulary import (
    LayerTarget,
    Message,
    current_settings,
    expect_message,
    expect_silence,
    fresh_channel,
    fresh_group,
    now_waiting,
    offers,
    results_of,
)

if TYPE_CHECKING:
    from asgi_conformance.peer import Peer, PeerGroup


def _note(kind: str) -> Message:
    """A message no other test (or earlier step) could have sent."""
    return {"type": f"xp.{kind}", "token": secrets.token_hex(6)}


async def _expect_in_peer(peer: Peer, channel: str) -> Message:
    message = await peer.areceive(channel, current_settings().delivery_timeout)
    assert message is not None, (
        f"{peer.name} got no message on {channel!r} within {current_settings().delivery_timeout:g} s")
    return message


# --- XP-1 ----------------------------------------------------------------------------------

@requirement("XP-1", needs=["cross-process"])
async def test_another_process_sends_to_a_channel_made_here_with_new_channel(layers: LayerPool, asgi_peers: PeerGroup) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    mine = await layer.new_channel()
    sent = [_note("to-a") for _ in range(3)]
    for message in sent:
        await peer.asend(mine, message)
    received = [await expect_message(layer, mine) for _ in sent]
    assert sorted(m["token"] for m in received) == sorted(m["token"] for m in sent)
    await expect_silence(layer, mine)


@requirement("XP-1", needs=["cross-process"])
async def test_this_process_sends_to_a_channel_another_made_with_new_channel(layers: LayerPool, asgi_peers: PeerGroup) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    theirs = await peer.anew_channel()
    message = _note("to-b")
    await layer.send(theirs, message)
    assert await _expect_in_peer(peer, theirs) == message
    assert await peer.areceive(theirs, current_settings().quiet_period) is None, "the message arrived twice"


# --- XP-2 ----------------------------------------------------------------------------------

@requirement("XP-2", needs=["cross-process", "groups"])
async def test_group_send_in_one_process_reaches_members_in_every_process(layers: LayerPool, asgi_peers: PeerGroup) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    group = fresh_group("xp2")
    mine, theirs = await layer.new_channel(), await peer.anew_channel()
    await layer.group_add(group, mine)
    await peer.agroup_add(group, theirs)

    from_peer = _note("group-from-b")
    await peer.agroup_send(group, from_peer)
    assert await expect_message(layer, mine) == from_peer
    assert await _expect_in_peer(peer, theirs) == from_peer

    from_here = _note("group-from-a")
    await layer.group_send(group, from_here)
    assert await _expect_in_peer(peer, theirs) == from_here
    assert await expect_message(layer, mine) == from_here
    await expect_silence(layer, mine)


# --- XP-3 ----------------------------------------------------------------------------------

SENDERS, PER_SENDER = 3, 40


@requirement("XP-3", needs=["cross-process", "normal-channels"])
async def test_several_processes_send_to_one_channel_nothing_lost_or_doubled_order_kept(
        layers: LayerPool, asgi_peers: PeerGroup, asgi_target: LayerTarget) -> None:
    # Room for every message even if the receiver lags, where the layer has capacities at all.
    overrides = {"capacity": SENDERS * PER_SENDER * 2} if offers(asgi_target, "capacity") else {}
    layer = layers.make(**overrides)
    senders = await asgi_peers.astart_many(SENDERS, **overrides)
    channel = fresh_channel("xp3")

    # The receive waits before anyone sends, so a layer without a backlog (Pub/Sub) is
    # judged on delivery to a waiting receiver, not on messages sent before it subscribed.
    first = asyncio.ensure_future(layer.receive(channel))
    await now_waiting(first)
    sending = asyncio.gather(*(peer.asend_many(channel, PER_SENDER) for peer in senders))
    try:
        received = await results_of([first], "receives waiting before the sends")
        received += [await expect_message(layer, channel) for _ in range(SENDERS * PER_SENDER - 1)]
    finally:
        await sending  # surfaces a sender's own error (e.g. ChannelFull) rather than hiding it
    await expect_silence(layer, channel)

    copies = Counter((m["sender"], m["seq"]) for m in received)
    doubled = sorted(key for key, count in copies.items() if count > 1)
    assert not doubled, f"delivered more than once: {doubled[:10]}"
    for peer in senders:
        order = [m["seq"] for m in received if m["sender"] == peer.name]
        missing = sorted(set(range(PER_SENDER)) - set(order))
        assert not missing, f"lost from {peer.name}: seq {missing}"
        assert order == list(range(PER_SENDER)), f"{peer.name}'s messages arrived out of order: {order}"


# --- XP-4 ----------------------------------------------------------------------------------

@requirement("XP-4", needs=["cross-process", "flush"])
async def test_a_flush_in_another_process_empties_what_this_process_queued(
        layers: LayerPool, asgi_peers: PeerGroup, asgi_target: LayerTarget) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    stale = _note("stale")
    specific = await layer.new_channel()
    await layer.send(specific, stale)
    # A normal channel too where the layer keeps messages on one for a later receive.
    normal = fresh_channel("xp4") if offers(asgi_target, "normal-channels", "backlog") else None
    if normal:
        await layer.send(normal, stale)
    groups = offers(asgi_target, "groups")
    if groups:
        group, member = fresh_group("xp4"), await layer.new_channel()
        await layer.group_add(group, member)

    await peer.aflush()

    # The first message after the flush must be the peer's fresh one, not what A queued before.
    for channel in filter(None, [specific, normal]):
        fresh = _note("after-flush")
        await peer.asend(channel, fresh)
        assert await expect_message(layer, channel) == fresh, f"{channel!r} still held a message after the flush"
    if groups:
        await peer.agroup_send(group, _note("to-flushed-group"))
        fresh = _note("after-flush")
        await peer.asend(member, fresh)
        assert await expect_message(layer, member) == fresh, "group membership survived a flush in another process"
        await expect_silence(layer, member)


@requirement("XP-4", needs=["cross-process", "flush"])
async def test_a_flush_here_empties_what_another_process_has_not_received_yet(
        layers: LayerPool, asgi_peers: PeerGroup, asgi_target: LayerTarget) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    # Two channels of one peer: receiving on the first may fetch the second's message ahead
    # of time (a process-local buffer); a flush must drop that message all the same.
    first, second = await peer.anew_channel(), await peer.anew_channel()
    await layer.send(second, _note("stale"))
    prompt = _note("prompt")
    await layer.send(first, prompt)
    assert await _expect_in_peer(peer, first) == prompt
    normal = fresh_channel("xp4") if offers(asgi_target, "normal-channels", "backlog") else None
    if normal:
        await peer.asend(normal, _note("stale"))
    groups = offers(asgi_target, "groups")
    if groups:
        group, member = fresh_group("xp4"), await peer.anew_channel()
        await peer.agroup_add(group, member)

    await layer.flush()

    for channel in filter(None, [second, normal]):
        fresh = _note("after-flush")
        await layer.send(channel, fresh)
        got = await _expect_in_peer(peer, channel)
        assert got == fresh, f"{peer.name} received {got!r} on {channel!r}: it was sent before the flush"
    if groups:
        await layer.group_send(group, _note("to-flushed-group"))
        fresh = _note("after-flush")
        await layer.send(member, fresh)
        got = await _expect_in_peer(peer, member)
        assert got == fresh, f"group membership survived a flush in another process: got {got!r}"
        late = await peer.areceive(member, current_settings().quiet_period)
        assert late is None, f"group membership survived a flush in another process: got {late!r}"


@requirement("XP-4", needs=["cross-process", "flush"])
async def test_a_flush_here_empties_what_another_process_fetched_ahead_on_the_channel_it_reads(
        layers: LayerPool, asgi_peers: PeerGroup, asgi_target: LayerTarget) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    # The peer receives the first of two messages on one channel (and, with groups, one member's
    # copy of its own group_send to two of its members, so that only the flush crosses processes):
    # the one receive may fetch the rest into the peer's memory, for receives to come. A flush
    # must drop them there all the same.
    channel = await peer.anew_channel()
    prompt = _note("prompt")
    for message in (prompt, _note("stale")):
        await layer.send(channel, message)
    assert await _expect_in_peer(peer, channel) == prompt
    sibling = None
    if offers(asgi_target, "groups"):
        group, member, sibling = fresh_group("xp4"), await peer.anew_channel(), await peer.anew_channel()
        await peer.agroup_add(group, member)
        await peer.agroup_add(group, sibling)
        await peer.agroup_send(group, _note("stale-group-copy"))
        assert (await _expect_in_peer(peer, member))["type"] == "xp.stale-group-copy"

    await layer.flush()

    for reader in filter(None, [channel, sibling]):
        fresh = _note("after-flush")
        await layer.send(reader, fresh)
        got = await _expect_in_peer(peer, reader)
        assert got == fresh, f"{peer.name} received {got!r} on {reader!r}: it was sent before the flush"


@requirement("XP-4", needs=["cross-process", "flush"])
async def test_a_receive_waiting_in_another_process_during_a_flush_gets_later_messages(
        layers: LayerPool, asgi_peers: PeerGroup) -> None:
    layer = layers.make()
    peer = await asgi_peers.astart()
    theirs = await peer.anew_channel()
    waiting = asyncio.ensure_future(peer.areceive(theirs, current_settings().delivery_timeout * 2))
    await layer.flush()
    fresh = _note("after-flush")
    await layer.send(theirs, fresh)
    got = await waiting
    assert got == fresh, f"the receive waiting during the flush got {got!r}"


# --- XP-5 ----------------------------------------------------------------------------------

LEFTOVERS_LIMIT = 500  # traffic messages the killed peer may have left on the shared channel


async def _next_not_traffic(receive: Callable[[str], Awaitable[Message]], channel: str) -> Message:
    """The next message on the shared channel that the killed peer's traffic did not leave."""
    for _ in range(LEFTOVERS_LIMIT):
        message = await receive(channel)
        if message.get("type") != "xp.traffic":
            return message
    raise AssertionError(f"more than {LEFTOVERS_LIMIT} leftover traffic messages on {channel!r}")


@requirement("XP-5", needs=["cross-process"])
async def test_a_process_killed_mid_traffic_leaves_the_layer_usable(
        layers: LayerPool, asgi_peers: PeerGroup, asgi_target: LayerTarget) -> None:
    layer = layers.make()
    doomed, survivor = await asgi_peers.astart_many(2)
    # The shared normal channel is read after sends to it: it needs a backlog too.
    shared = fresh_channel("xp5") if offers(asgi_target, "normal-channels", "backlog") else None
    group = fresh_group("xp5") if offers(asgi_target, "groups") else None

    await doomed.atraffic(channel=shared, group=group)
    assert doomed.kill() == -signal.SIGKILL

    mine, theirs = await layer.new_channel(), await survivor.anew_channel()
    note = _note("survivor-to-a")
    await survivor.asend(mine, note)
    assert await expect_message(layer, mine) == note
    note = _note("a-to-survivor")
    await layer.send(theirs, note)
    assert await _expect_in_peer(survivor, theirs) == note

    if shared:
        note = _note("survivor-to-shared")
        await survivor.asend(shared, note)
        assert await _next_not_traffic(lambda ch: expect_message(layer, ch), shared) == note
        note = _note("a-to-shared")
        await layer.send(shared, note)
        assert await _next_not_traffic(lambda ch: _expect_in_peer(survivor, ch), shared) == note

    if group:
        await layer.group_add(group, mine)
        await survivor.agroup_add(group, theirs)
        for send_to_group in (survivor.agroup_send, layer.group_send):
            note = _note("group-after-kill")
            await send_to_group(group, note)
            assert await expect_message(layer, mine) == note
            assert await _expect_in_peer(survivor, theirs) == note
