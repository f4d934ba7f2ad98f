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
from . import layout as L
from .hotentries import EntryWrites
from .segment import Segment

_LINK_AND_EXPIRY = struct.Struct("<I8xd").unpack_from  # M_NEXT, then M_EXPIRES (first chunk of a message)
_U32 = struct.Struct("<I").unpack_from
assert L.M_EXPIRES - L.M_NEXT == 12


class Backlog(NamedTuple):
    """One channel's queue as the segment holds it."""

    waiting: int  # unexpired messages
    oldest_expires: float | None  # the expiry stamp of the first of them (time.monotonic seconds)


def backlogs(segment: Segment, names: list[bytes] | None, now: float) -> dict[bytes, Backlog]:
    """The backlog of each of ``names`` (none: every channel holding an unexpired message)."""
    with segment.locked():
        mem, layout = segment.mem, segment.layout
        if names is None:
            found = {}
            for index, name in _channel_entries(segment):
                backlog = _backlog(mem, layout, index, now)
                if backlog.waiting:
                    found[name] = backlog
            return found
        entries = EntryWrites(layout, mem, segment.words)
        return {name: _backlog(mem, layout, entries.find(L.KIND_CHANNEL, name), now) for name in names}


def _channel_entries(segment: Segment) -> list[tuple[int, bytes]]:
    """(index, name) of every channel entry; call with the lock held."""
    mem, layout = segment.mem, segment.layout
    found = []
    for index in range(1, _U32(mem, L.H_ENTRY_BUMP)[0]):
        off = layout.entry(index)
        if mem[off + L.E_KIND] == L.KIND_CHANNEL:
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
                    now: float) -> LayerStatistics:
    """``LayerStatistics`` of ``channels`` (none: every channel holding a message); no server,
    so no connections."""
    names = None if channels is None else [check_channel_name(channel).encode() for channel in channels]
    table = {}
    for name, backlog in backlogs(segment, names, now).items():
        age = None if backlog.oldest_expires is None else max(0.0, now - (backlog.oldest_expires - expiry))
        table[name.decode()] = ChannelStatistics(backlog.waiting, age)
    return LayerStatistics(channels=table, channel_full_raised=counters.channel_full_raised,
                           group_deliveries_missed=counters.group_deliveries_missed)
