"""Each layer operation as one locked step on the segment: lock, repair, transaction, commit.

Kept apart from the asyncio layer so the crash tests and the checker can drive the very same
code from plain synchronous processes.
"""

from __future__ import annotations

from .hotpath import NOT_HANDLED, HotPath
from .segment import Segment, SegmentFull
from .store import Full, Store, counter_name

TOKEN_MASK = 0xFFFFFFFF


class Operations:
    def __init__(self, segment: Segment):
        self.segment = segment
        self.store = Store(segment.layout, segment.name)
        self.hot = HotPath(segment)

    def _run(self, label, method, *args):
        segment = self.segment
        segment.acquire()
        try:
            tx = segment.transaction(label)
            result = method(tx, *args)
            segment.commit(tx)
            return result
        finally:
            segment.release()

    def send(self, channel: bytes, data: bytes, expires: float, capacity: int, now: float) -> list[tuple[int, int]]:
        """Queue ``data``; raises store.Full (after pruning expired messages) or SegmentFull."""
        segment, store = self.segment, self.store
        segment.acquire()
        try:
            waiters = self.hot.send(channel, data, expires, capacity)
            if waiters is not NOT_HANDLED:
                return waiters
            for attempt in (0, 1):
                tx = segment.transaction("send")
                try:
                    waiters = store.send(tx, channel, data, expires, capacity)
                except Full:
                    if attempt:
                        raise
                    prune = segment.transaction("prune")
                    store.prune(prune, channel, now)  # expired messages free capacity
                    segment.commit(prune)
                    continue
                segment.commit(tx)
                return waiters
        finally:
            segment.release()
        raise AssertionError("unreachable")  # pragma: no cover

    def pop(self, channel: bytes, now: float) -> bytes | None:
        segment = self.segment
        segment.acquire()
        try:
            data = self.hot.pop(channel, now)
            if data is NOT_HANDLED:
                tx = segment.transaction("receive")
                data = self.store.pop(tx, channel, now)
                segment.commit(tx)
            return data
        finally:
            segment.release()

    def pop_or_arm(self, channel: bytes, now: float, slot: int, token: int, disarm: bool) -> bytes | None:
        """Pop for a receive that stays registered (see ``Store.pop_or_arm``)."""
        token &= TOKEN_MASK
        segment = self.segment
        segment.acquire()
        try:
            data = self.hot.pop(channel, now, slot, token, disarm)
            if data is NOT_HANDLED:
                tx = segment.transaction("receive")
                data = self.store.pop_or_arm(tx, channel, now, slot, token, disarm)
                segment.commit(tx)
            return data
        finally:
            segment.release()

    def unregister(self, channel: bytes, slot: int, token: int) -> None:
        self._run("unregister", self.store.unregister, channel, slot, token & TOKEN_MASK)

    def group_add(self, group: bytes, channel: bytes, expires: float) -> None:
        self._run("group_add", self.store.group_add, group, channel, expires)

    def group_discard(self, group: bytes, channel: bytes) -> None:
        self._run("group_discard", self.store.group_discard, group, channel)

    def group_send(self, group: bytes, data: bytes, expires: float, capacity_of, now: float):
        """Send to every live member; members that are full (or don't fit) miss it.

        Returns [(channel, waiters)] for the members that got it. One transaction per member,
        so a large group never overflows the journal.
        """
        segment, store = self.segment, self.store
        delivered = []
        segment.acquire()
        try:
            tx = segment.transaction("group_send")
            members = store.group_members(tx, group, now)
            segment.commit(tx)
            for channel in members:
                capacity = capacity_of(channel)
                waiters = self.hot.send(channel, data, expires, capacity, "group_send")
                if waiters is not NOT_HANDLED:
                    delivered.append((channel, waiters))
                    continue
                tx = segment.transaction("group_send")
                try:
                    waiters = store.send(tx, channel, data, expires, capacity)
                except Full:
                    prune = segment.transaction("prune")
                    store.prune(prune, channel, now)
                    segment.commit(prune)
                    tx = segment.transaction("group_send")
                    try:
                        waiters = store.send(tx, channel, data, expires, capacity)
                    except (Full, SegmentFull):  # this member misses the message
                        continue
                except SegmentFull:
                    continue
                segment.commit(tx)
                delivered.append((channel, waiters))
        finally:
            segment.release()
        return delivered

    def held(self, channel: bytes) -> int:
        """Messages counting against ``channel``'s capacity (for tests and diagnostics)."""
        return self._run("held", self.store.held, channel, counter_name(channel))
