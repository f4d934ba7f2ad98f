"""LocalBook: the group memberships of a layer object's own ``p!x`` channels, per process
queue, fed one copy per process (process_groups.py)."""

from __future__ import annotations

import time


class LocalBook:
    """Group -> member channels (with deadlines) of each of this object's process queues."""

    def __init__(self) -> None:
        self._queues: dict[str, dict[str, dict[str, float]]] = {}

    def add(self, queue: str, group: str, channel: str, deadline: float) -> None:
        members = self._queues.setdefault(queue, {}).setdefault(group, {})
        members.pop(channel, None)  # re-added: to the end, as a new member
        members[channel] = deadline

    def discard(self, queue: str, group: str, channel: str) -> bool:
        """Remove it; True if the group has no member left in this queue."""
        members = self._queues.get(queue, {}).get(group)
        if members is None:
            return True
        members.pop(channel, None)
        if not members:
            del self._queues[queue][group]
            return True
        return False

    def members(self, queue: str, group: str) -> list[str]:
        """Live members, in the order they joined (a late receive finds its copy first)."""
        members = self._queues.get(queue, {}).get(group)
        if not members:
            return []
        now = time.monotonic()
        expired = [channel for channel, deadline in members.items() if deadline <= now]
        for channel in expired:
            del members[channel]
        return list(members)

    def queues_of(self, group: str) -> list[str]:
        return [queue for queue, groups in self._queues.items() if self.members(queue, group)]

    def groups_of(self, queue: str) -> list[str]:
        return list(self._queues.get(queue, {}))

    def queues(self) -> list[str]:
        return [queue for queue, groups in self._queues.items() if groups]

    def has(self, queue: str) -> bool:
        return bool(self._queues.get(queue))

    def forget(self, queue: str) -> None:
        self._queues.pop(queue, None)

    def forget_all(self) -> None:
        self._queues.clear()
