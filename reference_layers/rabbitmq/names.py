"""Broker object names for one layer prefix.

Every name starts with ``{prefix}:``; ':' is not allowed in channel or group names, so the
parts can always be split apart again and two prefixes never collide.
"""

from __future__ import annotations

from typing import Any

# Group sends go through the broker's built-in direct exchange, with the prefix in the
# routing key: it always exists (a publish to it can never fail with 404 and close the
# publishing channel) and the layer leaves no exchange of its own behind.
GROUPS_EXCHANGE = "amq.direct"
# Channel queues dead-letter what they refuse or let expire here; a sender's notice queue is
# bound to it on the header its group copies carry (missed_copies.py). Built in, like the above.
NOTICES_EXCHANGE = "amq.headers"


class BrokerNames:
    def __init__(self, prefix: str):
        self.prefix = prefix
        # Names of every queue this prefix created, so flush() can find them without the
        # management plugin (AMQP cannot list queues).
        self.registry = f"{prefix}:registry"
        # Routing key (on GROUPS_EXCHANGE) of the answers to a flush (flush_answers.py); '!' is
        # in no group name, so it is no group's key.
        self.flush_answers = f"{prefix}:!flushed"
        self._queue_stem = f"{prefix}:q:"
        self._membership_stem = f"{prefix}:m:"
        self._notices_stem = f"{prefix}:n:"
        self._copies_stem = f"{prefix}:g:"

    def queue(self, channel: str) -> str:
        """The queue holding ``channel``: its own, or its process's shared one for ``p!x``."""
        bang = channel.find("!")  # non_local_name, inlined: every send and receive asks
        return self._queue_stem + (channel if bang < 0 else channel[:bang + 1])

    def channel_of(self, queue: str) -> str:
        """The normal channel whose own queue this is (for a process queue: ``p!``)."""
        return queue[len(self._queue_stem):]

    def is_channel_queue(self, queue: str) -> bool:
        """A normal channel's queue or a process's, as opposed to a membership or the registry."""
        return queue.startswith(self._queue_stem)

    def group_copies(self, process_queue: str) -> str:
        """The queue where a process's own group memberships receive one copy per group_send,
        fanned out to its member channels inside the process (process_groups.py)."""
        return self._copies_stem + self.channel_of(process_queue)

    def delivered_to(self, queue: str, properties: Any) -> str | None:
        """The channel a delivery from ``queue`` is for: the queue's own normal channel, or, on a
        process queue, the ``type`` of a direct send or the member whose membership queue
        forwarded a group copy (its ``x-death`` header); None if this layer did not send it."""
        if not queue.endswith("!"):
            return self.channel_of(queue)
        if properties.type:
            return str(properties.type)
        deaths = (properties.headers or {}).get("x-death")
        if deaths:
            origin = deaths[0].get("queue")
            if isinstance(origin, bytes):
                origin = origin.decode()
            return self.member_of(origin or "")
        return None

    def is_copies_queue(self, queue: str) -> bool:
        return queue.startswith(self._copies_stem)

    def group_of(self, routing_key: str) -> str:
        """The group a routing key on GROUPS_EXCHANGE names (see group_key)."""
        return routing_key[len(self.prefix) + 1:]

    def notices(self, sender: str) -> str:
        """The queue where group copies sent by layer object ``sender`` land when a member
        refused them as full (or let them expire)."""
        return self._notices_stem + sender

    def group_key(self, group: str) -> str:
        """Routing key of ``group`` on GROUPS_EXCHANGE."""
        return f"{self.prefix}:{group}"

    def membership(self, group: str, channel: str) -> str:
        """The forwarding queue that makes ``channel`` a member of ``group``."""
        return f"{self._membership_stem}{group}:{channel}"

    def member_of(self, membership_queue: str) -> str | None:
        """The channel a forwarding queue belongs to, or None if it is not one."""
        if not membership_queue.startswith(self._membership_stem):
            return None
        return membership_queue.rpartition(":")[2]
