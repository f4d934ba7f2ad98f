"""LocalBook: the group memberships of a layer object's own ``p!x`` channels, per process
queue, fed one copy per process (process_groups.py)."""

from __future__ import annotations

import time


class LocalBook:
    """Group -> member channels (with deadlines) of each of this object's process queues, each
    group's members in deadline order: joined later, or again, with the layer's group_expiry,
    a member expires after those before it."""

    def __init__(self) -> None:
        self._queues: dict[str, dict[str, dict[str, float]]] = {}

    def add(self, queue: str, group: str, channel: str, deadline: float) -> None:
        groups = self._queues.setdefault(queue, {})
        members = groups.setdefault(group, {})
        members.pop(channel, None)  # re-added: to the end, as a new member
        if members and deadline < next(reversed(members.values())):  # a shorter group_expiry than before
            members[channel] = deadline
            groups[group] = dict(sorted(members.items(), key=lambda item: item[1]))
            return
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
        members = self._live(queue, group)
        return list(members) if members else []

    def _live(self, queue: str, group: str) -> dict[str, float] | None:
        """The group's members in ``queue``, the expired ones dropped: they are kept in deadline
        order (``add``), so only the first are looked at, not every member per group_send."""
        members = self._queues.get(queue, {}).get(group)
        if members:
            now = time.monotonic()
            while members and next(iter(members.values())) <= now:
                del members[next(iter(members))]
        return members

    def queues_of(self, group: str) -> list[str]:
        return [queue for queue in self._queues if self._live(queue, group)]

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
