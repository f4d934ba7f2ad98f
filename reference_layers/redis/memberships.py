"""What each layer object remembers of the group memberships it added, to add them again after
a restart lost them.

Redis keeps memberships only in memory (``P:g:G``); a server restarted without persistence
comes back without them, and group_send would reach no member although no one discarded one
(FAULT-6). So each layer object notes every membership it added with the time it expires on
the server (group_add renews it), forgets it on group_discard or flush(), and when its
connection to a shard finds that shard's server restarted (another ``run_id`` in ``INFO
server`` than the one seen before), adds that shard's unexpired ones again for the time they
have left. A membership lives on its channel's shard, so each shard restores only its own.

A flush in another process is not seen here: if the server restarts afterwards, before the
memberships expire, this object adds its own again. XP-4 (a flush seen by every process)
holds meanwhile: nothing is added again without a restart.
"""

from __future__ import annotations

import time
from typing import NamedTuple

PRUNE_EVERY = 1000  # memberships noted between sweeps of the expired ones out of memory


class Membership(NamedTuple):
    group: str
    channel: str


class Restore(NamedTuple):
    """A membership to add again, and the time it has left (ms)."""

    membership: Membership
    left_ms: int


class MembershipBook:
    """The memberships one layer object added, per shard, and each shard's last ``run_id``."""

    def __init__(self, shards: int):
        self._deadlines: list[dict[Membership, float]] = [{} for _ in range(shards)]  # -> monotonic expiry
        self._run_ids: list[bytes | None] = [None] * shards
        self._noted = 0

    def __len__(self) -> int:
        return sum(map(len, self._deadlines))

    def added(self, shard: int, group: str, channel: str, group_expiry: float) -> None:
        self._deadlines[shard][Membership(group, channel)] = time.monotonic() + group_expiry
        self._noted += 1
        if self._noted % PRUNE_EVERY == 0:
            for index in range(len(self._deadlines)):
                self._live(index)

    def discarded(self, shard: int, group: str, channel: str) -> None:
        self._deadlines[shard].pop(Membership(group, channel), None)

    def forget_all(self) -> None:
        """A flush deleted every membership, whoever added it."""
        for deadlines in self._deadlines:
            deadlines.clear()

    def to_restore(self, shard: int, run_id: bytes) -> list[Restore]:
        """What to add again on ``shard``, connected to the server ``run_id``: nothing unless
        it is another server than the one seen before (restarted, its state lost)."""
        seen = self._run_ids[shard]
        if seen is None or seen == run_id:
            return []
        return self._live(shard)

    def connected(self, shard: int, run_id: bytes) -> None:
        """``run_id`` serves ``shard`` now, with what this object added (restored if need be)."""
        self._run_ids[shard] = run_id

    def _live(self, shard: int) -> list[Restore]:
        """The unexpired memberships of ``shard``, forgetting the expired ones."""
        deadlines = self._deadlines[shard]
        now = time.monotonic()
        noted = list(deadlines.items())  # a copy: a loop in another thread may add meanwhile
        for gone in [key for key, deadline in noted if deadline <= now]:
            deadlines.pop(gone, None)
        return [Restore(key, max(1, int((deadline - now) * 1000))) for key, deadline in noted if deadline > now]
