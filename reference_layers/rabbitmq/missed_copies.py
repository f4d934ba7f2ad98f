"""Group copies a full member missed (CAP-5), counted for the layer object that sent them.

CAP-5 keeps a full member's miss silent to the sender, and the broker only decides it after
the publish was confirmed: a copy is dead-lettered from its forwarding queue into the
member's queue, which refuses it when full. So channel queues are declared with
``x-overflow=reject-publish-dlx`` and the built-in ``amq.headers`` as dead-letter exchange,
every group_send carries a header naming the layer object that sent it, and that object's
notice queue, bound to ``amq.headers`` on that header, gets each copy of its sends that died
in a member's queue. statistics() takes them out and counts those whose latest death is
``maxlen`` (refused as full); the rest expired unread there. Direct sends carry no such
header: what a full channel refuses of them, or lets expire, matches no binding and is
dropped by the exchange, so the hot path of send pays nothing.

Limits: notices wait on the broker until statistics() reads them, bounded (oldest dropped
first) by ``NOTICES_LIMIT`` messages and ``NOTICES_BYTES``; a layer that never reads its
statistics under heavy loss undercounts. The queue is this object's: close() deletes it, and
the broker after ``NOTICES_IDLE_MS`` unused (a process that died). flush() leaves it: it
holds counts, not messages for anyone.
"""

from __future__ import annotations

from typing import Any

from .link import Link
from .names import NOTICES_EXCHANGE, BrokerNames
from .session import Session

SENDER_HEADER = "asgi-group-sender"
NOTICES_LIMIT = 10_000
NOTICES_BYTES = 16 * 1024 * 1024
NOTICES_IDLE_MS = 10 * 60 * 1000  # x-expires: renewed by group_send's and group_add's (cached) declare


class MissedCopies:
    """This layer object's notice queue, and the headers its group copies carry."""

    def __init__(self, names: BrokerNames, sender: str):
        self.queue = names.notices(sender)
        self._sender = sender
        self.headers = {SENDER_HEADER: sender}  # on every group_send of this object
        self.used = False  # a group_send declared the notice queue (on some connection)

    async def ensure(self, session: Session) -> None:
        """Declare and bind the notice queue (once per connection, then as queues are renewed)."""
        self.used = True
        await session.ensure_queue(self.queue, "", declare=self._declare)

    async def _declare(self, link: Link) -> None:
        arguments = {"x-max-length": NOTICES_LIMIT, "x-max-length-bytes": NOTICES_BYTES,
                     "x-expires": NOTICES_IDLE_MS}
        await link.admin("queue_declare", self.queue, durable=False, arguments=arguments)
        await link.admin("queue_bind", self.queue, NOTICES_EXCHANGE,
                         arguments={"x-match": "all", SENDER_HEADER: self._sender})

    async def take(self, session: Session) -> int:
        """Take the notices waiting now; how many were copies a full member refused.
        Nothing to read (0) while this loop is not connected: a count is not worth a connect."""
        link = session.link
        if not self.used or link is None or not link.open:
            return 0
        await self.ensure(session)  # made again if a restart lost it (its notices went with it)
        refused = 0
        while (got := await link.get(self.queue)) is not None:
            refused += _refused_as_full(got.properties)
        return refused


def _refused_as_full(properties: Any) -> bool:
    deaths = (properties.headers or {}).get("x-death") or []
    reason = deaths[0].get("reason") if deaths else None  # the latest death comes first
    if isinstance(reason, bytes):
        reason = reason.decode()
    return reason == "maxlen"
