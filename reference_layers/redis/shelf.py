"""The copies one event loop holds for its own channels (copies.py says which and why), with no I/O.

Copies of a channel are held in id order, which is the order they were sent in: a pop's reply
and a delivery travel on two connections, so the older may come second (deliveries.py).

A copy is held one of two ways: a Copy in its channel's deque (oldest first), or, for members
of a late fan-out, one HeldEntry shared by all of them, found by channel in one dict made in
one step from the pop's names (a Copy and a deque each cost a fan-out to 1,000 members more
than their receives did). A channel is held one way at a time: a copy coming for a channel an
entry holds turns that one into a Copy first, so every channel's copies stay oldest first.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Container

from .copies import Copy, Counted, HeldEntry

_HERE = Counted.HERE  # an enum member looked up once: a fan-out compares thousands


class CopyShelf:
    """The copies one event loop holds for its channels, oldest first per channel.

    ``uncount(copy)`` is called for each copy counted by the server that ``take`` gives out;
    ``clock``: the event loop's time (the copies' deadlines are in it). The copies held are
    of this process's own capacity keys (``p!``), a few at most: what counts per key is found
    by looking at every channel held, with no index to keep up on each take."""

    def __init__(self, uncount: Callable[[Copy], None], clock: Callable[[], float]) -> None:
        self._held: dict[str, deque[Copy]] = {}
        self._entries: dict[str, HeldEntry] = {}  # channel -> the entry holding its one copy
        self._live: set[HeldEntry] = set()  # entries still holding a member's copy
        self._current: dict[str, Callable[[float], bool]] = {}  # capacity key -> are its flushes heard at this time
        self._uncount = uncount
        self._clock = clock
        self._counted_here = 0  # copies of Counted.HERE held: none, and no send needs to look

    def __bool__(self) -> bool:
        return bool(self._held) or bool(self._entries)

    def holds(self, channel: str) -> bool:
        return channel in self._held or channel in self._entries

    @property
    def channels_held(self) -> Container[str]:
        """The channels with copies here, for ``in`` tests while the shelf is not changed: a dict's
        own view when one way of holding is empty (a fan-out tests hundreds)."""
        if not self._entries:
            return self._held.keys()
        if not self._held:
            return self._entries.keys()
        return self._held.keys() | self._entries.keys()

    def put(self, items: list[Copy | HeldEntry], current: Callable[[float], bool]) -> None:
        """Hold a pop's copies, so of one capacity key, in the order it took them (a fan-out puts
        hundreds at once: this loop is kept lean). ``current``: whether the flushes of that key
        are heard at a given loop time (flushes.py), for ``take_ready``."""
        if not items:
            return
        self._current[items[0].capacity_key] = current
        run: list[Copy] = []
        for item in items:
            if type(item) is HeldEntry:
                self._put_copies(run)
                run = []
                self._put_entry(item)
            else:
                run.append(item)  # type: ignore[arg-type]  # not a HeldEntry: a Copy
        self._put_copies(run)

    def _put_copies(self, copies: list[Copy]) -> None:
        held, entries, here = self._held, self._entries, 0
        for copy in copies:
            if entries and copy.channel in entries:
                self._entry_to_queue(copy.channel)
            queue = held.get(copy.channel)
            if queue is None:
                held[copy.channel] = deque((copy,))
            elif queue[-1].message_id < copy.message_id:
                queue.append(copy)
            else:  # older than one held: a pop's reply read after a delivery (deliveries.py)
                queue.insert(next(i for i, there in enumerate(queue) if there.message_id > copy.message_id), copy)
            if copy.counted is _HERE:
                here += 1
        self._counted_here += here

    def _put_entry(self, entry: HeldEntry) -> None:
        members = entry.held
        older = self._held.keys() & members if self._held else set()
        if self._entries:
            older |= self._entries.keys() & members
        if older:  # these members hold older copies: theirs goes behind, as a Copy
            self._put_copies([entry.copy_for(channel) for channel in members if channel in older])
            members = [channel for channel in members if channel not in older]
        if members:
            entry.left = len(members)
            if self._entries:
                self._entries.update(dict.fromkeys(members, entry))
            else:  # most often: one dict made, not two
                self._entries = dict.fromkeys(members, entry)
            self._live.add(entry)
            self._counted_here += len(members)

    def _entry_to_queue(self, channel: str) -> None:
        """``channel``'s copy held by an entry, as a Copy in its queue (still counted here)."""
        entry = self._entries.pop(channel)
        self._release(entry)
        self._held[channel] = deque((entry.copy_for(channel),))

    def _release(self, entry: HeldEntry) -> None:
        entry.left -= 1
        if not entry.left:
            self._live.discard(entry)

    def _forget(self, entry: HeldEntry) -> None:
        """Drop every copy ``entry`` still holds (expired, or flushed)."""
        for channel in entry.held:
            if self._entries.get(channel) is entry:
                del self._entries[channel]
        self._counted_here -= entry.left
        entry.left = 0
        self._live.discard(entry)

    def take(self, channel: str, now: float) -> Copy | None:
        """The oldest unexpired copy for ``channel`` (dropping expired ones), or None. It is
        uncounted on the server now if the server counted it."""
        entry = self._entries.pop(channel, None)
        if entry is not None:  # the channel's only copy
            self._release(entry)
            self._counted_here -= 1
            return entry.copy_for(channel) if entry.deadline > now else None
        held = self._held
        queue = held.get(channel)
        while queue:
            copy = queue.popleft()
            if not queue:
                del held[channel]
            if copy.counted is _HERE:
                self._counted_here -= 1
            elif copy.deadline > now:
                self._uncount(copy)
                return copy
            if copy.deadline > now:
                return copy
        return None

    def take_ready(self, channel: str) -> bytes | None:
        """The body of ``take`` now, if the flushes of the copy's capacity key are heard (so no
        flush came since its pop); else None, taking nothing: the caller listens first, then
        takes. (None too if the copies held had expired: dropped on the way.) Members receiving
        one after another come here once each, with no coroutine of their own: the common case
        (an unexpired group copy) is taken in this one call."""
        entry = self._entries.get(channel)
        if entry is not None:
            current = self._current.get(entry.capacity_key)
            now = self._clock()
            if current is None or not current(now):
                return None
            del self._entries[channel]
            entry.left -= 1  # _release(entry), written out: once per member and copy
            if not entry.left:
                self._live.discard(entry)
            self._counted_here -= 1
            return entry.body if entry.deadline > now else None
        queue = self._held.get(channel)
        if not queue:
            return None
        copy = queue[0]
        current = self._current.get(copy.capacity_key)
        now = self._clock()
        if current is None or not current(now):
            return None
        if copy.deadline <= now or copy.counted is not _HERE:
            taken = self.take(channel, now)  # expired ones dropped, one read ahead uncounted
            return None if taken is None else taken.body
        queue.popleft()
        self._counted_here -= 1
        if not queue:
            del self._held[channel]
        return copy.body

    def restore(self, copy: Copy) -> None:
        """Put back a copy ``take`` gave that found no taker, at the head again (uncounted on
        the server by then: this loop counts it)."""
        if copy.channel in self._entries:  # a younger copy came meanwhile: it goes behind
            self._entry_to_queue(copy.channel)
        copy.counted = _HERE
        self._counted_here += 1
        queue = self._held.get(copy.channel)
        if queue is None:
            queue = self._held[copy.channel] = deque()
        queue.appendleft(copy)

    def take_all(self, channel: str) -> list[Copy]:
        """Every copy for ``channel``, to push back to its queue (which counts them all again)."""
        if channel in self._entries:
            self._entry_to_queue(channel)
        queue = self._held.pop(channel, None)
        if not queue:
            return []
        self._counted_here -= sum(1 for copy in queue if copy.counted is _HERE)
        return list(queue)

    def drop(self, doomed: Callable[[Copy | HeldEntry], bool]) -> None:
        """Forget every copy ``doomed`` names (a flush reached them: no count to give back);
        ``doomed`` reads ``capacity_key`` and ``epoch``, which entries have too."""
        for entry in [entry for entry in self._live if doomed(entry)]:
            self._forget(entry)
        for channel, queue in list(self._held.items()):
            kept = deque(copy for copy in queue if not doomed(copy))
            if len(kept) == len(queue):
                continue
            self._counted_here -= sum(1 for copy in queue if copy.counted is _HERE) \
                - sum(1 for copy in kept if copy.counted is _HERE)
            if kept:
                self._held[channel] = kept
            else:
                del self._held[channel]

    def take_everything(self) -> list[Copy]:
        """Every copy held, oldest first per channel: for a closing loop to push back."""
        return [copy for channel in self.channels() for copy in self.take_all(channel)]

    def held_for(self, capacity_key: str, now: float) -> int:
        """Unexpired copies held for the channels of ``capacity_key`` that the server does not
        count (they count against it)."""
        return self.held_keys(now).get(capacity_key, 0)

    def held_keys(self, now: float) -> dict[str, int]:
        """Capacity key -> its unexpired copies held here and counted here, for the keys with any
        (expired ones are dropped on the way)."""
        if not self._counted_here:
            return {}
        counts: dict[str, int] = {}
        for entry in list(self._live):
            if entry.deadline <= now:
                self._forget(entry)
            else:
                counts[entry.capacity_key] = counts.get(entry.capacity_key, 0) + entry.left
        for channel, queue in list(self._held.items()):
            while queue and queue[0].deadline <= now:  # deadlines grow along a queue
                expired = queue.popleft()
                if expired.counted is _HERE:
                    self._counted_here -= 1
            if not queue:
                del self._held[channel]
                continue
            here = sum(1 for copy in queue if copy.counted is _HERE)
            if here:
                key = queue[0].capacity_key
                counts[key] = counts.get(key, 0) + here
        return counts

    def waiting(self, channel: str, now: float) -> tuple[int, float | None]:
        """(unexpired copies held for ``channel``, the oldest one's deadline)."""
        entry = self._entries.get(channel)
        if entry is not None:
            return (1, entry.deadline) if entry.deadline > now else (0, None)
        live = [copy.deadline for copy in self._held.get(channel, ()) if copy.deadline > now]
        return len(live), (live[0] if live else None)

    def channels(self) -> list[str]:
        return [*self._held, *self._entries]

    def clear(self) -> None:
        self._held.clear()
        self._entries.clear()
        self._live.clear()
        self._current.clear()
        self._counted_here = 0
