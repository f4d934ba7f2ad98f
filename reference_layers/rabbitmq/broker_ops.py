"""What the layer asks of the broker: sends, group sends, flush.

Layout (names from names.py):
- one queue per normal channel, one per process (``p!``) shared by its ``p!x`` channels,
  declared with ``x-max-length`` = capacity and ``x-overflow=reject-publish``: the broker
  refuses a publish to a full queue and nacks it, whichever process sent it (capacity holds
  under concurrent senders), and ``x-message-ttl`` = expiry (expired messages leave the head
  of the queue and free room);
- group membership = a forwarding queue per (group, channel), bound to ``amq.direct`` with
  the group's key; its messages expire at once (``x-message-ttl=0``) and are dead-lettered
  into the member's queue (memberships.py). Why not bind members' queues directly (cheaper
  per copy)? AMQP routes at most one copy of a publish into a queue, however many bindings
  match, and ``p!a``, ``p!b`` share a queue: each member's copy must be a message of its own
  so the shared capacity counts (and drops) each copy exactly, as the spec's model demands.
  The forwarding queue also carries the membership on the broker: ``x-expires`` =
  group_expiry ends it when no group_add renewed it, even after every process that added it
  died, and any process can add any channel.

A send or group_send whose connection dropped under it is run again on the next connection,
within the layer's ``timeout``, with the same message id (dedupe.py drops the second copy if
the first had landed). Costs of that: the second copy holds a place in the queue until it is
received and dropped, so a channel near its capacity can refuse a send one message early
meanwhile; and if the second publish is refused as full, the send raises ChannelFull unless
this layer object received the first copy already (AMQP cannot look for it without taking
messages out of order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pika

from ..core.errors import ChannelFull
from ..core.names import is_process_specific
from . import flush_answers
from .confirms import PublishOutcome
from .errors import NOT_FOUND, PRECONDITION_FAILED, BrokerRefused, BrokerUnavailable
from .link import Link
from .memberships import Memberships
from .missed_copies import MissedCopies
from .names import GROUPS_EXCHANGE
from .process_groups import GroupFeed
from .receiving import Receiver
from .session import Session


async def send(session: Session, receiver: Receiver, channel: str, data: bytes) -> None:
    queue = session.shared.names.queue(channel)
    message_id = session.shared.ids.next()  # the same on every attempt: dedupe.py drops a second copy
    if is_process_specific(channel):
        properties = pika.BasicProperties(type=channel, message_id=message_id)
    else:
        properties = pika.BasicProperties(message_id=message_id)
    attempts = _Attempts()
    await _through_drops(session, lambda: _send_once(session, receiver, channel, queue, data, properties, attempts))


@dataclass
class _Attempts:
    """What the earlier attempts of one send left unknown."""

    may_have_landed: bool = False  # a publish went out and its confirm was lost with its connection


async def _through_drops(session: Session, attempt: Callable[[], Awaitable[None]]) -> None:
    """Run ``attempt`` again while connections drop under it (FAULT-5), within the layer's
    timeout; connecting again is bounded by that timeout too, so a broker that is really gone
    still makes the call raise BrokerUnavailable in time."""
    deadline = session.loop.time() + session.shared.config.timeout
    while True:
        try:
            await attempt()
            return
        except BrokerUnavailable:
            if session.loop.time() >= deadline:
                raise


async def _send_once(session: Session, receiver: Receiver, channel: str, queue: str, data: bytes,
                     properties: Any, attempts: _Attempts) -> None:
    if not session.declared_recently(queue):
        await session.ensure_queue(queue, channel)
    state = receiver.queues.get(queue)
    if state is not None and state.parked:  # a busy receive loop holds nothing parked: no await
        await receiver.before_send(queue)
        held = receiver.queues.get(queue)
        if held is not None and held.parked:
            await _count_what_this_loop_holds(session, queue, channel, len(held.parked))
    for _attempt in range(3):
        link = await session.get_link()
        earlier = attempts.may_have_landed
        attempts.may_have_landed = True
        outcome = await link.publish("", queue, data, properties, mandatory=True)
        if outcome is PublishOutcome.ACCEPTED:
            receiver.after_send(queue)
            return
        if outcome is PublishOutcome.REFUSED:
            if earlier and session.shared.seen.has(channel, properties.message_id):
                return  # full now, but the first publish landed: this object received it already
            raise ChannelFull(f"channel {channel!r} is full")
        # Returned: the queue is gone (a flush, a broker restart, x-expires). Make it again.
        attempts.may_have_landed = earlier
        await session.ensure_queue(queue, channel, force=True)
    raise ChannelFull(f"channel {channel!r} could not be created on the broker")


async def _count_what_this_loop_holds(session: Session, queue: str, channel: str, held: int) -> None:
    """Messages this loop took out of the queue (group copies fanned out, spilled siblings)
    still count against its capacity: the broker alone would let the queue fill again."""
    link = await session.get_link()
    try:
        reply = await link.admin("queue_declare", queue, passive=True)
    except BrokerRefused as exc:
        if exc.reply_code != NOT_FOUND:
            raise
        return
    if int(reply.message_count) + held >= session.shared.capacity_for(channel):
        raise ChannelFull(f"channel {channel!r} is full")


async def group_send(session: Session, missed: MissedCopies, feed: GroupFeed, group: str, data: bytes) -> None:
    properties, placement = feed.properties_for(group, missed.headers, session.shared.ids.next())
    if placement is not None:
        await feed.drain_ahead(placement)  # its basic.get leaves with the publish below

    async def once() -> None:
        await missed.ensure(session)  # where copies a full member refuses are counted (CAP-5)
        link = await session.get_link()
        published = link.publish(GROUPS_EXCHANGE, session.shared.names.group_key(group), data, properties)
        # The members a group_send's copy feeds often wake in this very turn (its sender is
        # woken first): the broker routes the next copy meanwhile instead of after them.
        link.send_now()
        await published

    await _through_drops(session, once)
    if placement is not None:  # this object's own members: back once their copy is in place
        await feed.own_sends.placed(placement)


async def flush(session: Session, receiver: Receiver, memberships: Memberships, feed: GroupFeed) -> None:
    """Delete every queue and membership of this prefix, whichever process made them.

    Consumers on deleted queues, in any process, are cancelled by the broker with them; their
    owners drop what they held parked, tell the flush so (flush_answers.py), and consume the
    queue again once it is made again (receiving.py): nothing from before the flush is
    delivered after it, in any process, once flush() returned.
    """
    link = await session.get_link()
    await session.ensure_registry(link)
    names = set()
    while True:
        got = await link.get(session.shared.names.registry)
        if got is None:
            break
        names.add(got.body.decode())
    known = session.shared.names
    consumed = {name for name in names if known.is_channel_queue(name) or known.is_copies_queue(name)}
    own = receiver.consumer_counts()  # this loop's: it drops what they hold itself, below
    listening = flush_answers.Listening(link, known.flush_answers, receiver.answerer)
    try:
        memberships.forget_all()
        feed.flushed()
        owed: Counter[str] = Counter()
        for name in sorted(names):
            if name in consumed:  # answers may come as soon as it is deleted: heard from before
                owed[name] = await _delete_counting(session, link, name, own[name], listening.open)
            else:
                await session.delete_queue(name)
        session.forget_all()
        receiver.flushed()
        if listening.opened:
            await listening.wait(owed - own)
    finally:
        listening.close()


async def _delete_counting(session: Session, link: Link, queue: str, own: int,
                           listen: Callable[[], Awaitable[None]]) -> int:
    """Delete ``queue``; how many consumers it had, every connection's. Asked only of a queue in
    use (a delete if unused is refused): a passive declare of a queue gone already (its note in
    the registry outlives it) would close the channel, and most queues a flush meets have no
    consumer. If more than ``own`` (this loop's) consume it, ``listen()`` before the delete, so
    that their answers are heard."""
    if not own:  # else it is in use: a refused delete would only cost a channel
        try:
            await link.admin("queue_delete", queue, if_unused=True)
            return 0
        except BrokerRefused as exc:
            if exc.reply_code == NOT_FOUND:
                return 0
            if exc.reply_code != PRECONDITION_FAILED:
                raise
    try:
        consumers = int((await link.admin("queue_declare", queue, passive=True)).consumer_count)
    except BrokerRefused as exc:
        if exc.reply_code != NOT_FOUND:
            raise
        return 0  # its last consumer went, and x-expires or another flush took it meanwhile
    if consumers > own:
        await listen()
    await session.delete_queue(queue)
    return consumers
