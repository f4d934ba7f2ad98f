"""Group memberships on the broker, and what each layer object remembers it added.

A membership is a forwarding queue per (group, channel), bound to ``amq.direct`` with the
group's key; its messages expire at once (``x-message-ttl=0``) and are dead-lettered into the
member's queue (broker_ops.py says why not a direct binding). ``x-expires`` = group_expiry
ends it when no group_add renewed it, even after every process that added it died.

The queues are transient: a restarted broker, or the surviving node of a cluster, no longer
has them. So each layer object remembers the memberships it added, until discarded or
expired, and adds them again when it connects to a broker whose registry queue is gone (the
registry only goes with the broker's state: flush keeps it). The session runs
:meth:`Memberships.restore` on every connect (it is told to by the layer).
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from .errors import NOT_FOUND, PRECONDITION_FAILED, BrokerRefused, safe_url
from .link import Link
from .names import GROUPS_EXCHANGE, BrokerNames
from .session import Session

log = logging.getLogger(__name__)
PRUNE_EVERY = 1000  # memberships added between sweeps of the expired ones out of memory


class Membership(NamedTuple):
    group: str
    channel: str


class Memberships:
    """The memberships this layer object added and did not discard, with their deadlines."""

    def __init__(self) -> None:
        self._deadlines: dict[Membership, float] = {}  # -> monotonic time it expires on the broker

    def __len__(self) -> int:
        return len(self._deadlines)

    async def add(self, session: Session, group: str, channel: str, group_expiry: float) -> None:
        deadlines = self._deadlines
        deadlines[Membership(group, channel)] = time.monotonic() + group_expiry
        if len(deadlines) % PRUNE_EVERY == 0:
            self._forget_expired()
        await _declare(session, group, channel, group_expiry)

    async def discard(self, session: Session, group: str, channel: str) -> None:
        self._deadlines.pop(Membership(group, channel), None)
        await session.delete_queue(session.shared.names.membership(group, channel))

    def forget_all(self) -> None:
        """A flush deleted them all, whoever added them."""
        self._deadlines.clear()

    def take_of_queues(self, queues: set[str], names: BrokerNames) -> list[Membership]:
        """Forget (and return) the memberships of channels held in ``queues``: close() deletes
        them with those queues, never to be added again."""
        mine = [key for key in self._deadlines if names.queue(key.channel) in queues]
        for key in mine:
            del self._deadlines[key]
        return mine

    async def restore(self, session: Session, link: Link, broker_kept_state: bool) -> None:
        """Add again the memberships this layer added, if the broker lost them with its state
        (if it kept it, they are there, or a flush or their expiry ended them there)."""
        if not self._deadlines or broker_kept_state:
            return
        self._forget_expired()
        now = time.monotonic()
        log.warning("RabbitMQ at %s lost this layer's queues; adding %d group memberships again",
                    safe_url(link.url), len(self._deadlines))
        for (group, channel), deadline in list(self._deadlines.items()):
            await _declare(session, group, channel, max(0.001, deadline - now))

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for key in [key for key, deadline in self._deadlines.items() if deadline <= now]:
            del self._deadlines[key]


async def _declare(session: Session, group: str, channel: str, group_expiry: float) -> None:
    names = session.shared.names
    target = names.queue(channel)
    await session.ensure_queue(target, channel)
    link = await session.get_link()
    membership = names.membership(group, channel)
    expires_ms = max(1, int(group_expiry * 1000))
    arguments = {
        "x-message-ttl": 0,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-expires": expires_ms,
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
    # Awaited, unlike a channel queue's note: no later publish of group_add confirms it, and a
    # flush in another process that read the registry before the note got there would leave
    # this membership in place (XP-4 failed so, about one run in ten).
    await (await session.register(link, membership, expires_ms))
