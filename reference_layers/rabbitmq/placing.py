"""Placing a group copy among a process's members, with no I/O (process_groups.py does the I/O).

A copy fanned out in a process goes to each member's waiting receive, or is parked for the
member to take later, while the process's shared capacity has room (CAP-4); the members past it
miss the copy (CAP-5). A waiting receive takes no room: the copy is handed over at once. The
members that are not waiting share one parked entry (parked.py), made in one step when none of
them waits: the late pattern of a fan-out, where members call receive() one after another.
"""

from __future__ import annotations

import time

from .queue_state import Parked, QueueState, acked


def place_copy(state: QueueState, room: int, members: list[str], body: bytes) -> int:
    """Place ``body`` for ``members`` (in their order) with ``room`` left in the process's
    capacity; returns how many missed it."""
    copy = Parked(body, None, None, time.monotonic())
    waiting = state.waiters.first
    if not waiting or waiting.keys().isdisjoint(members):  # late members: none waits
        kept = members if room >= len(members) else members[:max(room, 0)]
        state.parked.park_each(kept, copy)
        return len(members) - len(kept)
    missed, parked, hand = 0, [], state.waiters.hand
    for channel in members:
        if room <= 0:
            missed += 1
        elif not hand(channel, body):
            parked.append(channel)
            room -= 1
    state.parked.park_each(parked, copy)
    return missed


def serve_acked(state: QueueState, channel: str) -> None:
    """Hand ``channel``'s waiting receives what is parked acked for it, oldest first (messages a
    group_send took in from the process queue ahead of its copy)."""
    while channel in state.waiters.first:
        entry = next((each for each in state.parked.of(channel) if acked(each)), None)
        if entry is None:
            return
        future = state.waiters.take(channel)
        if future is None:
            return
        state.parked.forget(channel, entry)
        future.set_result(entry.body)
