"""A full check of a segment's bookkeeping, for tests and for ``--check`` after a crash.

Takes the segment lock (which repairs first, as any user would), then walks every structure
and accounts for every entry and chunk: each is either free or reachable from exactly one
place, counts match the lists they count, and every hashed entry sits in its own bucket.
"""

from __future__ import annotations

import zlib

from . import inbox
from . import layout as L
from .groups import member_key
from .journal import F64, U32, Transaction
from .messages import chunks_for, read_message
from .segment import Segment
from .store import counter_name


def check(segment: Segment) -> list[str]:
    """Problems found (an empty list means consistent)."""
    with segment.locked():
        return _Checker(segment).run()


class _Checker:
    def __init__(self, segment: Segment):
        self.mem, self.layout = segment.mem, segment.layout
        self.problems: list[str] = []
        self.entry_owner: dict[int, str] = {}
        self.chunk_owner: dict[int, str] = {}
        self.listed_members: set[int] = set()  # member entries found in their group's list

    def u32(self, off):
        return U32.unpack_from(self.mem, off)[0]

    def field(self, index, field):
        return self.u32(self.layout.entry(index) + field)

    def name(self, index):
        off = self.layout.entry(index)
        return bytes(self.mem[off + L.E_NAME:off + L.E_NAME + self.mem[off + L.E_NAMELEN]])

    def claim_entry(self, index, owner):
        if not 1 <= index < self.entry_bump:
            self.problems.append(f"{owner}: entry index {index} out of range")
            return False
        if index in self.entry_owner:
            self.problems.append(f"entry {index} reachable twice: {self.entry_owner[index]} and {owner}")
            return False
        self.entry_owner[index] = owner
        return True

    def claim_chunk(self, index, owner):
        if not 1 <= index < self.chunk_bump:
            self.problems.append(f"{owner}: chunk index {index} out of range")
            return False
        if index in self.chunk_owner:
            self.problems.append(f"chunk {index} reachable twice: {self.chunk_owner[index]} and {owner}")
            return False
        self.chunk_owner[index] = owner
        return True

    def run(self) -> list[str]:
        mem = self.mem
        if mem[L.H_STATE] != L.STATE_READY:
            self.problems.append(f"state byte is {mem[L.H_STATE]}, not READY")
        if mem[L.H_JOURNAL_FLAG]:
            self.problems.append("journal still marked committed after repair")
        self.entry_bump = self.u32(L.H_ENTRY_BUMP)
        self.chunk_bump = self.u32(L.H_CHUNK_BUMP)
        if not 1 <= self.entry_bump <= self.layout.n_entries + 1:
            self.problems.append(f"entry bump {self.entry_bump} out of range")
        if not 1 <= self.chunk_bump <= self.layout.n_chunks + 1:
            self.problems.append(f"chunk bump {self.chunk_bump} out of range")
        if self.problems:
            return self.problems
        self._free_lists()
        used_chunks = self._buckets()
        if used_chunks != self.u32(L.H_CHUNKS_USED):
            self.problems.append(f"header counts {self.u32(L.H_CHUNKS_USED)} chunks in use, found {used_chunks}")
        for index in range(1, self.entry_bump):
            if index not in self.entry_owner:
                self.problems.append(f"entry {index} (kind {mem[self.layout.entry(index)]}) is neither free nor reachable")
        for index in range(1, self.chunk_bump):
            if index not in self.chunk_owner:
                self.problems.append(f"chunk {index} is neither free nor part of a queued message")
        return self.problems

    def _free_lists(self):
        index = self.u32(L.H_ENTRY_FREE)
        while index and self.claim_entry(index, "free entry list"):
            if self.mem[self.layout.entry(index) + L.E_KIND] != L.KIND_FREE:
                self.problems.append(f"free entry {index} has kind {self.mem[self.layout.entry(index)]}")
            index = self.field(index, L.E_NEXT)
        index = self.u32(L.H_CHUNK_FREE)
        while index and self.claim_chunk(index, "free chunk list"):
            index = self.u32(self.layout.chunk(index) + L.C_NEXT)

    def _buckets(self) -> int:
        used = 0
        counters: dict[int, int] = {}  # counter entry -> messages of its siblings
        hashed_members: set[int] = set()  # claimed by their group's list, not by their bucket
        for bucket in range(self.layout.n_buckets):
            index = self.u32(self.layout.buckets + 4 * bucket)
            while index:
                kind, name = self.mem[self.layout.entry(index)], self.name(index)
                if kind == L.KIND_MEMBER:
                    if index in hashed_members:
                        self.problems.append(f"member entry {index} hashed twice")
                        break
                    hashed_members.add(index)
                    name = member_key(self.field(index, L.E_C), name)
                elif not self.claim_entry(index, f"bucket {bucket}"):
                    break
                if zlib.crc32(name, kind) % self.layout.n_buckets != bucket:
                    self.problems.append(f"entry {index} {name!r} sits in the wrong bucket")
                if kind == L.KIND_CHANNEL:
                    used += self._channel(index, name, counters)
                elif kind == L.KIND_GROUP:
                    self._group(index, name)
                elif kind == L.KIND_COUNTER:
                    used += self._inbox(index, name, counters)
                elif kind != L.KIND_MEMBER:
                    self.problems.append(f"entry {index} of kind {kind} is hashed")
                index = self.field(index, L.E_NEXT)
        listed = self.listed_members
        for member in sorted(listed - hashed_members):
            self.problems.append(f"member entry {member} ({self.name(member)!r}) is not hashed")
        for member in sorted(hashed_members - listed):
            self.problems.append(f"member entry {member} ({self.name(member)!r}) is hashed but in no group")
        for counter, held in counters.items():
            if self.field(counter, L.E_C) != held:
                self.problems.append(f"counter {self.name(counter)!r} says {self.field(counter, L.E_C)}, "
                                     f"siblings and inbox hold {held}")
        return used

    def _inbox(self, index, name, counters) -> int:
        """Claim the chunks of counter ``index``'s inbox (inbox.py) and count its copies."""
        used = copies = 0
        message, last = self.field(index, L.E_A), L.NIL
        while message:
            owner = f"inbox of {name!r}"
            if not self._message(message, owner):
                break
            length = self.u32(self.layout.chunk(message) + L.M_LENGTH)
            used += chunks_for(length)
            body = read_message(Transaction(self.mem, "check"), self.layout, message)
            if inbox.END_OF_NAMES not in body:
                self.problems.append(f"{owner}: message {message} names no member")
            else:
                copies += len(inbox.split(body)[0])
            last, message = message, self.u32(self.layout.chunk(message) + L.M_NEXT)
        if last != self.field(index, L.E_B):
            self.problems.append(f"counter {name!r}: inbox tail {self.field(index, L.E_B)} != last message {last}")
        if not self.field(index, L.E_A) and not self.field(index, L.E_D):
            self.problems.append(f"counter {name!r} has no channels and no inbox but was kept")
        counters[index] = counters.get(index, 0) + copies
        return used

    def _channel(self, index, name, counters) -> int:
        used = count = 0
        message, last = self.field(index, L.E_A), L.NIL
        while message and self._message(message, f"channel {name!r}"):
            off = self.layout.chunk(message)
            used += chunks_for(self.u32(off + L.M_LENGTH))
            count += 1
            last, message = message, self.u32(off + L.M_NEXT)
        if count != self.field(index, L.E_C):
            self.problems.append(f"channel {name!r} counts {self.field(index, L.E_C)}, holds {count}")
        if last != self.field(index, L.E_B):
            self.problems.append(f"channel {name!r} tail {self.field(index, L.E_B)} != last message {last}")
        if not count and not self.field(index, L.E_E):
            self.problems.append(f"channel {name!r} is empty and has no waiters but was kept")
        waiter = self.field(index, L.E_E)
        while waiter and self.claim_entry(waiter, f"waiter of {name!r}"):
            if self.mem[self.layout.entry(waiter)] != L.KIND_WAITER:
                self.problems.append(f"waiter list of {name!r} holds entry of kind {self.mem[self.layout.entry(waiter)]}")
            waiter = self.field(waiter, L.E_D)
        counter = self.field(index, L.E_F)
        if (counter_name(name) is None) != (counter == L.NIL):
            self.problems.append(f"channel {name!r} has counter link {counter}")
        elif counter:
            counters[counter] = counters.get(counter, 0) + count
            sibling = self.field(counter, L.E_D)
            while sibling and sibling != index:
                sibling = self.field(sibling, L.E_D)
            if sibling != index:
                self.problems.append(f"channel {name!r} missing from the sibling list of {self.name(counter)!r}")
            previous = self.field(index, L.E_G)
            if (self.field(previous, L.E_D) if previous else self.field(counter, L.E_D)) != index:
                self.problems.append(f"channel {name!r} links back to {previous}, which is not before it")
        return used

    def _message(self, message, owner) -> bool:
        """Claim the chunks of ``message``, checking its chain and header; False if it is not
        to be walked further."""
        if not self.claim_chunk(message, owner):
            return False
        off = self.layout.chunk(message)
        current = message
        for _ in range(chunks_for(self.u32(off + L.M_LENGTH)) - 1):
            current = self.u32(self.layout.chunk(current) + L.C_NEXT)
            if not self.claim_chunk(current, f"message of {owner}"):
                break
        if current != self.u32(off + L.M_LAST):
            self.problems.append(f"message of {owner}: last chunk {current} != recorded {self.u32(off + L.M_LAST)}")
        if F64.unpack_from(self.mem, off + L.M_EXPIRES)[0] <= 0:
            self.problems.append(f"message of {owner} has no expiry")
        return True

    def _group(self, index, name):
        count, member, before = 0, self.field(index, L.E_A), L.NIL
        while member and self.claim_entry(member, f"member of group {name!r}"):
            if self.mem[self.layout.entry(member)] != L.KIND_MEMBER:
                self.problems.append(f"group {name!r} lists entry {member} of kind {self.mem[self.layout.entry(member)]}")
            if self.field(member, L.E_C) != index:
                self.problems.append(f"member {self.name(member)!r} of group {name!r} names group {self.field(member, L.E_C)}")
            if self.field(member, L.E_E) != before:
                self.problems.append(f"member {self.name(member)!r} of group {name!r} links back to "
                                     f"{self.field(member, L.E_E)}, not {before}")
            self.listed_members.add(member)
            count += 1
            before, member = member, self.field(member, L.E_D)
        if count != self.field(index, L.E_C):
            self.problems.append(f"group {name!r} counts {self.field(index, L.E_C)} members, lists {count}")
        if not count:
            self.problems.append(f"group {name!r} has no members but was kept")
