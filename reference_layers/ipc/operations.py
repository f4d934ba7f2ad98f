"""Each layer operation as one locked step on the segment: lock, repair, transaction, commit.

Kept apart from the asyncio layer so the crash tests and the checker can drive the very same
code from plain synchronous processes.

Where the C core is built (``native.py``), a send or receive on a channel this process has
cached is one call into it that takes the lock, steps and lets go; it answers BUSY (the lock
was taken: wait for it here) or HELD (the lock is ours: repair if needed, go on in Python).

A send pokes the armed waiters of its channel right *after* it lets go of the lock: poking
while holding it was measured to cost a woken receiver (scheduled onto the sender's core)
a wait for the lock, about 50 µs on a ping-pong. A receive that is busy (not waiting) is
not armed and costs its senders no system call.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.names import ChannelNamer
from . import inbox
from . import layout as L
from .hotpath import NOT_HANDLED, HotPath
from .native import BUSY, HELD
from .segment import Segment, SegmentFull
from .shelf import Shelf
from .store import Full, Store, counter_name

TOKEN_MASK = 0xFFFFFFFF
_W_FLUSHES = L.H_FLUSHES >> 2
_FULL = object()  # a member refused for its capacity, after what had expired was dropped


class Operations:
    def __init__(self, segment: Segment, poker=None, shelf: Shelf | None = None, namer: ChannelNamer | None = None):
        self.segment = segment
        self.store = Store(segment.layout, segment.name)
        self.hot = HotPath(segment)
        self.poker = poker  # wakeups.Poker, or None: nobody is poked (tools, checks)
        # With a shelf, the layer object's: its copies taken out of its inboxes (None: they go to
        # their queues), and the namer of its channels: a group_send to them queues a copy in
        # each, as its receives find them cheapest (inbox.py is for the other processes' members).
        self.shelf = shelf
        self.namer = namer
        self._own = b"." + namer.client_prefix.encode() + b"!" if namer is not None else None

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

    def _take_over(self, answer) -> None:
        """Make the lock ours after the C core answered BUSY (wait for it here) or HELD (ours
        already: repair as acquire() would)."""
        if answer is BUSY:
            self.segment.acquire()
        else:
            self.segment.repair_if_needed()

    def send(self, channel: bytes, data: bytes, expires: float, capacity: int, now: float) -> None:
        """Queue ``data`` and poke its waiters; raises store.Full (after pruning expired
        messages) or SegmentFull."""
        segment, hot = self.segment, self.hot
        if self.shelf:  # the copies this object holds take room in its process's capacity
            capacity -= self.shelf.held(channel, now, hot.words[_W_FLUSHES])
        core = hot.core
        if core is not None:  # a whole locked step in C: at the cached entry, else looked up by name
            where = hot.buckets(channel)
            offset, kind_word, generation = hot.cached_entry(channel)
            pokes = core.locked_send(offset, kind_word, channel, generation, where.bucket, where.counter_length,
                                     where.counter_bucket, data, expires, capacity, "send")
        else:
            pokes = BUSY
        if pokes is BUSY or pokes is HELD:  # then the step in Python, the lock ours
            self._take_over(pokes)
            try:
                pokes = hot.send(channel, data, expires, capacity)
                if pokes is NOT_HANDLED:
                    pokes = self._send_general(channel, data, expires, capacity, now)
            finally:
                segment.release()
        if pokes and self.poker is not None:
            self.poker.poke(pokes, channel)

    def _send_general(self, channel: bytes, data: bytes, expires: float, capacity: int, now: float):
        segment, store = self.segment, self.store
        self._take_inbox(channel, now, shelve=False)  # its copies are older than this message
        for attempt in (0, 1):
            tx = segment.transaction("send")
            try:
                pokes = store.send(tx, channel, data, expires, capacity)
            except Full:
                if attempt or not store.expired_heads(segment.transaction("look"), channel, now):
                    raise
                prune = segment.transaction("prune")
                store.prune(prune, channel, now)  # expired messages free capacity
                segment.commit(prune)
                continue
            segment.commit(tx)
            return pokes
        raise AssertionError("unreachable")  # pragma: no cover

    def pop(self, channel: bytes, now: float) -> bytes | None:
        return self._pop(channel, now)

    def pop_or_arm(self, channel: bytes, now: float, *, slot: int, token: int, disarm: bool,
                   epoch: int | None) -> bytes | None:
        """Pop for a receive that stays registered (see ``Store.pop_or_arm``)."""
        return self._pop(channel, now, slot=slot, token=token & TOKEN_MASK, disarm=disarm, epoch=epoch)

    def _pop(self, channel: bytes, now: float, *, slot: int = 0, token: int = 0, disarm: bool = False,
             epoch: int | None = 0) -> bytes | None:
        """A plain pop (``slot`` 0) or a pop-or-arm of waker ``slot``: in C if it can, else in Python."""
        segment, hot = self.segment, self.hot
        core = hot.core
        if core is not None:  # a whole locked step in C: at the cached entry, else looked up by name
            where = hot.buckets(channel)
            offset, kind_word, generation = hot.cached_entry(channel)
            answer = core.locked_pop(offset, kind_word, channel, generation, where.bucket, where.counter_bucket, now,
                                     slot, token, disarm, epoch)
            if answer is not BUSY and answer is not HELD:
                return answer
        else:
            answer = BUSY
        self._take_over(answer)
        try:
            data = hot.pop(channel, now, slot=slot, token=token, disarm=disarm, epoch=epoch)
            if data is NOT_HANDLED and slot and hot.register(channel, slot, token):  # its first wait there
                data = hot.pop(channel, now, slot=slot, token=token, disarm=disarm, epoch=epoch)
            if data is NOT_HANDLED and self._take_inbox(channel, now, shelve=True):
                data = self.shelf.take(channel, now, self.hot.words[_W_FLUSHES]) if self.shelf is not None else None
                if data is None:
                    data = NOT_HANDLED
            if data is NOT_HANDLED:
                tx = segment.transaction("receive")
                if slot:
                    data = self.store.pop_or_arm(tx, channel, now, slot=slot, token=token, disarm=disarm, epoch=epoch)
                else:
                    data = self.store.pop(tx, channel, now)
                segment.commit(tx)
            return data
        finally:
            segment.release()

    def _take_inbox(self, channel: bytes, now: float, shelve: bool) -> bool:
        """With the lock held: take apart the inbox of ``channel``'s process, if it holds
        anything (inbox.py), one message per transaction; with ``shelve``, the copies for this
        process's members with nothing queued go to this object's shelf. True if there was one."""
        segment, store = self.segment, self.store
        tag = None  # whose local names go to the shelf: only this process's, of this object's own 'p!'
        own, namer = self._own, self.namer
        if shelve and self.shelf is not None and namer is not None and own and channel.endswith(own, 0, channel.find(b"!") + 1):
            tag = namer.local_tag()
        taken = False
        while counter := inbox.pending(store, segment.transaction("look"), channel):
            tx = segment.transaction("inbox")
            shelved = inbox.take_first(store, tx, counter, now, tag)
            segment.commit(tx)
            if shelved is not None and self.shelf is not None:
                self.shelf.put(shelved, self.hot.words[_W_FLUSHES], now)
            taken = True
        return taken

    def watched_words(self, channel: bytes) -> tuple[int, int]:
        """The words (u32 indexes) of ``channel``'s head link and of its process's inbox link
        (0 if it has no entry, or no process).

        For a receive that looks for a message without the lock while it spins (see
        ``IPCChannelLayer._wait_for``): the entry of a channel with a registered waiter stays
        where it is, and so does its counter, so either word turning nonzero says a message may
        be there. Read unlocked it is only a hint; the receive pops under the lock to find out.
        """
        segment, hot = self.segment, self.hot
        segment.acquire()
        try:
            index = hot.channel(channel)
            if not index:
                return 0, 0
            off = hot.entries + index * L.ENTRY_SIZE
            counter = hot.words[(off + L.E_F) >> 2]
            return (off + L.E_A) >> 2, (hot.entries + counter * L.ENTRY_SIZE + L.E_A) >> 2 if counter else 0
        finally:
            segment.release()

    def unregister(self, channel: bytes, slot: int, token: int) -> None:
        self._run("unregister", self.store.unregister, channel, slot, token & TOKEN_MASK)

    def group_add(self, group: bytes, channel: bytes, expires: float) -> None:
        self._run("group_add", self.store.group_add, group, channel, expires)

    def group_discard(self, group: bytes, channel: bytes) -> None:
        self._run("group_discard", self.store.group_discard, group, channel)

    def group_send(self, group: bytes, data: bytes, expires: float, capacity_of, now: float) -> int:
        """Send to every live member and poke its waiters; members that are full (or don't
        fit) miss it. Returns how many members missed it (CAP-5: silent, but counted).
        ``capacity_of``: a member's capacity (of its name), or one int for every member.

        The members of another process (``p!*``) get one copy in its inbox (``_to_inbox``),
        judged by its capacity once for all of them. A normal channel, or one of the calling
        object's own, gets its own, one transaction per member, so a large group never overflows
        the journal; our process found full (after dropping what had expired) stays full for the
        rest of this locked step, so its other members at that capacity or less miss the message
        with no work: pruning again for each would walk every sibling each time.
        """
        segment, store = self.segment, self.store
        missed = 0
        pokes_by_channel: list[tuple[Sequence[tuple[int, int, int]], bytes]] = []
        full_at: dict[bytes, int] = {}  # our own 'p!' -> the largest capacity it was found full at
        segment.acquire()
        try:
            members = self.hot.live_members(group, now)
            if members is None:  # an expired membership to remove (or a corrupt list to report)
                tx = segment.transaction("group_send")
                members = inbox.by_process(store.group_members(tx, group, now))
                segment.commit(tx)
            uniform = capacity_of if isinstance(capacity_of, int) else None
            own = self._own
            for counter, channels in members.items():
                if counter and not (own and counter.endswith(own)):
                    missed += self._to_inbox(counter, channels, data, expires, capacity_of, now, pokes_by_channel)
                    continue
                for channel in channels:  # normal channels (counter b""), and our own
                    capacity = uniform or capacity_of(channel)
                    if full_at and full_at.get(counter, 0) >= capacity:
                        missed += 1  # its process was found full in this step: no pruning again
                        continue
                    pokes = self.hot.send(channel, data, expires, capacity, "group_send")
                    if pokes is NOT_HANDLED:
                        pokes = self._group_send_general(channel, data, expires, capacity, now)
                        if pokes is None or pokes is _FULL:
                            missed += 1  # this member misses the message
                            if pokes is _FULL and counter:
                                full_at[counter] = max(full_at.get(counter, 0), capacity)
                            continue
                    if pokes:
                        pokes_by_channel.append((pokes, channel))
        finally:
            segment.release()
        if self.poker is not None and pokes_by_channel:
            self.poker.poke_each(pokes_by_channel)  # one datagram per waker, not per member
        return missed

    def _to_inbox(self, counter: bytes, channels: list[bytes], data: bytes, expires: float, capacity_of,
                  now: float, pokes_by_channel: list) -> int:
        """With the lock held: one copy in ``counter``'s inbox for the members that fit its
        capacity, in order (one inbox message per ``inbox.BATCH``), and the pokes of their armed
        waiters. Returns how many members missed it."""
        segment, store = self.segment, self.store
        fitting = self._fitting(counter, channels, capacity_of, now)
        if len(fitting) < len(channels) and store.expired_heads(segment.transaction("look"), channels[0], now):
            prune = segment.transaction("prune")
            store.prune(prune, channels[0], now)  # expired messages free capacity
            segment.commit(prune)
            fitting = self._fitting(counter, channels, capacity_of, now)
        for start in range(0, len(fitting), inbox.BATCH):
            tx = segment.transaction("group_send")
            try:
                inbox.push(store, tx, counter, fitting[start:start + inbox.BATCH], data, expires)
            except SegmentFull:
                fitting = fitting[:start]
                break
            segment.commit(tx)
        counter_index = self.hot.hashed.find(L.KIND_COUNTER, counter)
        if fitting and counter_index:  # only a channel of the process can have a waiter: one walk
            wanted = set(fitting)
            pokes_by_channel += [(pokes, channel) for channel, pokes in self.hot.armed_siblings(counter_index)
                                 if channel in wanted]
        return len(channels) - len(fitting)

    def _fitting(self, counter: bytes, channels: list[bytes], capacity_of, now: float) -> list[bytes]:
        """The members of process ``counter`` that its capacity has room for, taken in order."""
        held = self.store.held(self.segment.transaction("look"), counter, counter)
        if self.shelf:  # the copies this object holds take room there too
            held += self.shelf.held(counter, now, self.hot.words[_W_FLUSHES])
        if isinstance(capacity_of, int):
            return channels[:max(0, capacity_of - held)]
        fitting: list[bytes] = []
        for channel in channels:
            if held + len(fitting) < capacity_of(channel):
                fitting.append(channel)
        return fitting

    def _group_send_general(self, channel: bytes, data: bytes, expires: float, capacity: int, now: float):
        segment, store = self.segment, self.store
        self._take_inbox(channel, now, shelve=True)  # its copies are older than this one
        tx = segment.transaction("group_send")
        try:
            pokes = store.send(tx, channel, data, expires, capacity)
        except Full:
            if not store.expired_heads(segment.transaction("look"), channel, now):
                return _FULL  # nothing expired: pruning would free no room
            prune = segment.transaction("prune")
            store.prune(prune, channel, now)
            segment.commit(prune)
            tx = segment.transaction("group_send")
            try:
                pokes = store.send(tx, channel, data, expires, capacity)
            except Full:
                return _FULL
            except SegmentFull:
                return None
        except SegmentFull:
            return None
        segment.commit(tx)
        return pokes

    def held(self, channel: bytes) -> int:
        """Messages counting against ``channel``'s capacity (for tests and diagnostics)."""
        return self._run("held", self.store.held, channel, counter_name(channel))
