"""The C hot path (``_hotcore.c``) against the Python one: for any sequence of sends and
receives, two segments, one driven with the C steps and one without, end up byte for byte
the same (journal included), and every call answers (and pokes) the same.

That is what lets the crash tests (which stop a process inside a commit, in C or in Python)
and the consistency checker speak for both.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_layers.ipc import layout as L
from reference_layers.ipc import native
from reference_layers.ipc import segment as segments
from reference_layers.ipc.operations import Operations
from reference_layers.ipc.store import Full

from .ipc_helpers import NO_C_HOT_PATH, remove_segment, unique_prefix

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason=NO_C_HOT_PATH)

CHANNELS = [b"native.a", b"native.b", b"native.p!x", b"native.p!y"]
TOKEN = 0x5EED0001
NOW = 1000.0

send = st.tuples(st.just("send"), st.sampled_from(CHANNELS), st.integers(1, 300), st.integers(1, 4),
                 st.sampled_from([NOW + 60, NOW - 1]))  # a message that is already expired, sometimes
pop = st.tuples(st.just("pop"), st.sampled_from(CHANNELS))
pop_or_arm = st.tuples(st.just("pop_or_arm"), st.sampled_from(CHANNELS), st.booleans(),
                       st.sampled_from([None, 3, 5 << 32 | 7]))
unregister = st.tuples(st.just("unregister"), st.sampled_from(CHANNELS))


class PokeRecord:
    """Where the pokes of a send go (the layer's Poker sends them as datagrams)."""

    def __init__(self):
        self.pokes = []

    def poke(self, waiters, payload: bytes) -> None:
        self.pokes.append((list(waiters), payload))


def _without_lock(segment) -> bytes:
    """The segment's bytes but the mutex (the C library keeps thread bookkeeping in it)."""
    mem = bytes(segment.mem)
    return mem[:L.H_MUTEX] + mem[L.H_MUTEX + 64:]


def _apply(ops: Operations, slot: int, step):
    kind, channel = step[0], step[1]
    try:
        if kind == "send":
            _, _, size, capacity, expires = step
            ops.send(channel, bytes([size % 251]) * size, expires, capacity, NOW)
            return "sent"
        if kind == "pop":
            return ops.pop(channel, NOW)
        if kind == "pop_or_arm":
            _, _, disarm, epoch = step
            return ops.pop_or_arm(channel, NOW, slot=slot, token=TOKEN, disarm=disarm, epoch=epoch)
        ops.unregister(channel, slot, TOKEN)
        return "unregistered"
    except Full:
        return "full"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(send, pop, pop_or_arm, unregister), min_size=1, max_size=40))
def test_c_and_python_steps_leave_identical_segments(steps):
    prefixes = [unique_prefix("native-c"), unique_prefix("native-py")]
    attached = [segments.attach(prefix, L.MIN_SEGMENT_SIZE, 0o600) for prefix in prefixes]
    try:
        records = [PokeRecord(), PokeRecord()]
        with_c, with_python = Operations(attached[0], records[0]), Operations(attached[1], records[1])
        with_python.hot.core = None
        assert with_c.hot.core is not None
        slots = [segment.register_waker(TOKEN) for segment in attached]
        assert slots[0] == slots[1]
        for step in steps:
            answers = [_apply(ops, slots[0], step) for ops in (with_c, with_python)]
            assert answers[0] == answers[1], step
            assert records[0].pokes == records[1].pokes, step
            assert _without_lock(attached[0]) == _without_lock(attached[1]), step
    finally:
        for segment, prefix in zip(attached, prefixes):
            segments.release(segment)
            remove_segment(prefix)
