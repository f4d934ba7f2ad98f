"""Broker object names for one layer prefix.

Every name starts with ``{prefix}:``; ':' is not allowed in channel or group names, so the
parts can always be split apart again and two prefixes never collide.
"""

from __future__ import annotations

from ..base import is_process_specific, non_local_name


class BrokerNames:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.groups_exchange = f"{prefix}:groups"
        # flush() tells every connected instance here to drop messages it already took off the
        # broker (process channel buffers); each instance binds a private queue to it.
        self.control_exchange = f"{prefix}:control"
        # Names of every queue this prefix created, so flush() can find them without the
        # management plugin (AMQP cannot list queues).
        self.registry = f"{prefix}:registry"
        self._membership_stem = f"{prefix}:m:"

    def queue(self, channel: str) -> str:
        """The queue holding ``channel``: its own, or its process's shared one for ``p!x``."""
        return f"{self.prefix}:q:{non_local_name(channel) if is_process_specific(channel) else channel}"

    def membership(self, group: str, channel: str) -> str:
        """The forwarding queue that makes ``channel`` a member of ``group``."""
        return f"{self._membership_stem}{group}:{channel}"

    def member_of(self, membership_queue: str) -> str | None:
        """The channel a forwarding queue belongs to, or None if it is not one."""
        if not membership_queue.startswith(self._membership_stem):
            return None
        return membership_queue.rpartition(":")[2]
