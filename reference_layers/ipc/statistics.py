"""What the segment holds, for ``IPCChannelLayer.statistics()`` and ``--stats``.

Read in one locked step that changes nothing: an expired message is counted out, not
dropped (the next receive of its channel drops it). The segment keeps each message's expiry
stamp, not when it was sent, so the oldest message's age is its stamp minus the reader's
``expiry`` (the same rule as the Redis layer's; exact when every process uses one expiry).

The counters (ChannelFull raised, group copies missed) are kept per layer object, as the
in-memory and Redis layers keep them, not in the segment: a count shared by every process
would cost each of them a write to a shared cache line on the path that raises or misses,
and the layout (checked by the C core) would change for a diagnostic. So ``--stats`` from
a fresh process prints zeros for them.
"""

from __future__ import annotations

import mmap
import struct
from typing import NamedTuple

from ..core.names import check_channel_name
from ..core.statistics import ChannelStatistics, Counters, LayerStatistics
from . import inbox
from . import layout as L
from .hotentries import EntryWrites
from .journal import Transaction
from .segment import Segment
from .shelf import Shelf

_LINK_AND_EXPIRY = struct.Struct("<I8xd").unpack_from  # M_NEXT, then M_EXPIRES (first chunk of a message)
_U32 = struct.Struct("<I").unpack_from
assert L.M_EXPIRES - L.M_NEXT == 12


class Backlog(NamedTuple):
    """One channel's queue as the segment holds it."""

    waiting: int  # unexpired messages
    oldest_expires: float | None  # the expiry stamp of the first of them (time.monotonic seconds)


def backlogs(segment: Segment, names: list[bytes] | None, now: float) -> dict[bytes, Backlog]:
    """The backlog of each of ``names`` (none: every channel holding an unexpired message),
    counting the copies its process's inbox holds for it (inbox.py)."""
    with segment.locked():
        mem, layout = segment.mem, segment.layout
        if names is None:
            found = {}
            for index, name in _entries(segment, L.KIND_CHANNEL):
                backlog = _backlog(mem, layout, index, now)
                if backlog.waiting:
                    found[name] = backlog
            for index, counter in _entries(segment, L.KIND_COUNTER):
                _add_inbox(found, segment, index, counter, now, None)
            return found
        entries = EntryWrites(layout, mem, segment.words)
        found = {name: _backlog(mem, layout, entries.find(L.KIND_CHANNEL, name), now) for name in names}
        for counter in {name[:name.find(b"!") + 1] for name in names if b"!" in name}:
            index = entries.find(L.KIND_COUNTER, counter)
            if index:
                _add_inbox(found, segment, index, counter, now, set(names))
        return found


def _add_inbox(found: dict[bytes, Backlog], segment: Segment, index: int, counter: bytes, now: float,
               wanted: set[bytes] | None) -> None:
    """Count the unexpired copies of counter ``index``'s inbox into ``found`` (only ``wanted``)."""
    for _message, expires, local_names in inbox.messages(Transaction(segment.mem, "statistics"), segment.layout, index):
        if expires <= now:
            continue
        for local in local_names:
            name = counter + local
            if wanted is None or name in wanted:
                found[name] = merge(found.get(name), Backlog(1, expires))


def merge(first: Backlog | None, second: Backlog | None) -> Backlog:
    """One channel's backlog held in two places (its queue, its inbox, a shelf)."""
    if first is None or not first.waiting:
        return second or Backlog(0, None)
    if second is None or not second.waiting:
        return first
    return Backlog(first.waiting + second.waiting, min(first.oldest_expires or 0.0, second.oldest_expires or 0.0))


def _entries(segment: Segment, kind: int) -> list[tuple[int, bytes]]:
    """(index, name) of every entry of ``kind``; call with the lock held."""
    mem, layout = segment.mem, segment.layout
    found = []
    for index in range(1, _U32(mem, L.H_ENTRY_BUMP)[0]):
        off = layout.entry(index)
        if mem[off + L.E_KIND] == kind:
            found.append((index, bytes(mem[off + L.E_NAME:off + L.E_NAME + mem[off + L.E_NAMELEN]])))
    return found


def _backlog(mem: mmap.mmap, layout: L.Layout, index: int, now: float) -> Backlog:
    """Walk channel ``index``'s queue (0: no entry, nothing waits)."""
    waiting, oldest = 0, None
    message = _U32(mem, layout.entry(index) + L.E_A)[0] if index else L.NIL
    for _ in range(layout.n_chunks):  # a bound, should the queue ever be corrupt
        if not message:
            break
        following, expires = _LINK_AND_EXPIRY(mem, layout.chunk(message) + L.M_NEXT)
        if expires > now:
            waiting += 1
            if oldest is None:
                oldest = expires
        message = following
    return Backlog(waiting, oldest)


def read_statistics(segment: Segment, channels: list[str] | None, expiry: float, counters: Counters,
                    now: float, shelf: Shelf | None = None) -> LayerStatistics:
    """``LayerStatistics`` of ``channels`` (none: every channel holding a message), with the
    copies ``shelf`` holds (only the owner sees those); no server, so no connections."""
    names = None if channels is None else [check_channel_name(channel).encode() for channel in channels]
    found = backlogs(segment, names, now)
    if shelf:
        for name, held in shelf.backlogs(now, segment.words[L.H_FLUSHES >> 2]).items():
            if names is None or name in found:
                found[name] = merge(found.get(name), Backlog(*held))
    table = {}
    for name, backlog in found.items():
        age = None if backlog.oldest_expires is None else max(0.0, now - (backlog.oldest_expires - expiry))
        table[name.decode()] = ChannelStatistics(backlog.waiting, age)
    return LayerStatistics(channels=table, channel_full_raised=counters.channel_full_raised,
                           group_deliveries_missed=counters.group_deliveries_missed)
