"""What the layer asks of the broker: sends, group memberships, flush, cleanup.

Layout (names from names.py):
- one queue per normal channel, one per process (``p!``) shared by its ``p!x`` channels,
  declared with ``x-max-length`` = capacity and ``x-overflow=reject-publish``: the broker
  refuses a publish to a full queue and nacks it, whichever process sent it (capacity holds
  under concurrent senders), and ``x-message-ttl`` = expiry (expired messages leave the head
  of the queue and free room);
- group membership = a forwarding queue per (group, channel), bound to ``amq.direct`` with
  the group's key; its messages expire at once (``x-message-ttl=0``) and are dead-lettered
  into the member's queue. Why not bind members' queues directly (cheaper per copy)? AMQP
  routes at most one copy of a publish into a queue, however many bindings match, and
  ``p!a``, ``p!b`` share a queue: each member's copy must be a message of its own so the
  shared capacity counts (and drops) each copy exactly, as the spec's model demands. The
  forwarding queue also carries the membership on the broker: ``x-expires`` = group_expiry
  ends it when no group_add renewed it, even after every process that added it died, and
  any process can add any channel.
- a broker that lost its state (restarted, or a failover to a node that did not hold these
  queues) has lost the memberships too: each process remembers the memberships it added,
  until they expire or are discarded, and adds them again when it connects to a broker whose
  registry queue is gone (the registry only goes with the broker's state: flush keeps it).
"""

from __future__ import annotations

import logging
import time

import pika

from ..base import ChannelFull, is_process_specific
from .link import ACCEPTED, REFUSED, BrokerRefused, safe_url
from .names import GROUPS_EXCHANGE
from .session import NOT_FOUND, PRECONDITION_FAILED, Session

log = logging.getLogger(__name__)
PRUNE_EVERY = 1000  # memberships added between sweeps of the expired ones out of memory


async def send(session: Session, channel: str, data: bytes) -> None:
    names = session.shared.names
    queue = names.queue(channel)
    properties = pika.BasicProperties(type=channel) if is_process_specific(channel) else None
    await session.ensure_queue(queue, channel)
    await session.receiver.before_send(queue)
    for attempt in range(3):
        link = await session.get_link()
        outcome = await link.publish("", queue, data, properties, mandatory=True)
        if outcome == ACCEPTED:
            session.receiver.after_send(queue)
            return
        if outcome == REFUSED:
            raise ChannelFull(f"channel {channel!r} is full")
        # Returned: the queue is gone (a flush, a broker restart, x-expires). Make it again.
        await session.ensure_queue(queue, channel, force=True)
    raise ChannelFull(f"channel {channel!r} could not be created on the broker")


async def group_add(session: Session, group: str, channel: str, group_expiry: float) -> None:
    memberships = session.shared.memberships
    memberships[(group, channel)] = time.monotonic() + group_expiry
    if len(memberships) % PRUNE_EVERY == 0:
        _forget_expired(memberships)
    await _declare_membership(session, group, channel, group_expiry)


def _forget_expired(memberships: dict) -> None:
    now = time.monotonic()
    for key in [key for key, deadline in memberships.items() if deadline <= now]:
        del memberships[key]


async def restore_memberships(session: Session, link) -> None:
    """Add again the memberships this layer added, if the broker lost them with its state."""
    try:
        await link.admin("queue_declare", session.shared.names.registry, passive=True)
        return  # the broker kept its state: the memberships are there (or expired there)
    except BrokerRefused as exc:
        if exc.reply_code != NOT_FOUND:
            raise
    _forget_expired(session.shared.memberships)
    now = time.monotonic()
    log.warning("RabbitMQ at %s lost this layer's queues; adding %d group memberships again",
                safe_url(link.url), len(session.shared.memberships))
    for (group, channel), deadline in list(session.shared.memberships.items()):
        await _declare_membership(session, group, channel, max(0.001, deadline - now))


async def _declare_membership(session: Session, group: str, channel: str, group_expiry: float) -> None:
    names = session.shared.names
    target = names.queue(channel)
    await session.ensure_queue(target, channel)
    link = await session.get_link()
    membership = names.membership(group, channel)
    arguments = {
        "x-message-ttl": 0,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-expires": max(1, int(group_expiry * 1000)),
    }
    try:
        await link.admin("queue_declare", membership, durable=False, arguments=arguments)  # renews it
    except BrokerRefused as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        await link.admin("queue_delete", membership)  # added with another group_expiry: latest add wins
        await link.admin("queue_declare", membership, durable=False, arguments=arguments)
    try:
        await link.admin("queue_bind", membership, GROUPS_EXCHANGE, routing_key=names.group_key(group))
    except BrokerRefused as exc:
        if exc.reply_code != NOT_FOUND:  # deleted meanwhile by a flush: a flush may win that race
            raise
    await session.register(link, membership, arguments["x-expires"])


async def delete_queue(session: Session, queue: str) -> None:
    link = await session.get_link()
    try:
        await link.admin("queue_delete", queue)
    except BrokerRefused as exc:
        if exc.reply_code != NOT_FOUND:
            raise
    session.forget(queue)


async def group_discard(session: Session, group: str, channel: str) -> None:
    session.shared.memberships.pop((group, channel), None)
    await delete_queue(session, session.shared.names.membership(group, channel))


async def group_send(session: Session, group: str, data: bytes) -> None:
    link = await session.get_link()
    # A nack means a member's queue refused its copy: a full member misses it (CAP-5).
    await link.publish(GROUPS_EXCHANGE, session.shared.names.group_key(group), data)


async def flush(session: Session) -> None:
    """Delete every queue and membership of this prefix, whichever process made them.

    Consumers on deleted queues, in any process, are cancelled by the broker with them;
    their owners drop what they held parked and consume the queue again once it is made
    again (receiving.py), so nothing from before the flush is delivered after it.
    """
    link = await session.get_link()
    await session.ensure_registry(link)
    names = set()
    while True:
        body = await link.get(session.shared.names.registry)
        if body is None:
            break
        names.add(body.decode())
    session.shared.memberships.clear()
    for name in sorted(names):
        await delete_queue(session, name)
    session.forget_all()
    session.receiver.flushed()
