"""The IPC layer's segment lock: a robust pthread mutex in the segment where the C library has
them, an fcntl lock otherwise; which one is fixed in the segment's header when it is created,
so every process uses the same. Both must be let go of by the kernel when their holder dies,
and both must serialise the threads of one process (no ``threading.Lock`` in front any more).
The tests read the segment's lock kind and lock object directly: that is what they are about.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from reference_layers.ipc import IPCChannelLayer, robust_mutex
from reference_layers.ipc import layout as L
from reference_layers.ipc.consistency import check
from reference_layers.ipc.locking import SegmentLock
from tests.helpers import run

from .ipc_helpers import remove_segment, send_past_a_killed_lock_holder, unique_prefix

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def prefix():
    name = unique_prefix("lock")
    yield name
    remove_segment(name)


def _killed_holder_lets_go(layer: IPCChannelLayer) -> None:
    """Another process takes the lock and is SIGKILLed holding it: a blocked send goes through."""
    send_past_a_killed_lock_holder(layer, "lock.after", {"type": "test.after"})
    assert run(layer.receive("lock.after")) == {"type": "test.after"}
    assert check(layer._current().segment) == []


@pytest.mark.skipif(not robust_mutex.available(), reason="no robust pthread mutexes in this C library")
def test_a_new_segment_uses_the_robust_mutex(prefix):
    layer = IPCChannelLayer(prefix=prefix)
    try:
        segment = layer._current().segment
        assert segment.mem[L.H_LOCK_KIND] == L.LOCK_ROBUST_MUTEX
        assert isinstance(segment.lock, robust_mutex.RobustMutex)
        _killed_holder_lets_go(layer)
    finally:
        layer.close_sync()


def test_a_segment_made_without_robust_mutexes_keeps_the_fcntl_lock(prefix, monkeypatch):
    monkeypatch.setattr(robust_mutex, "_LIBS", None)  # as on a C library without robust mutexes
    layer = IPCChannelLayer(prefix=prefix)
    monkeypatch.undo()
    try:
        segment = layer._current().segment
        assert segment.mem[L.H_LOCK_KIND] == L.LOCK_FCNTL
        assert isinstance(segment.lock, SegmentLock)
        # the child can use robust mutexes, but reads the header and takes the fcntl lock too
        _killed_holder_lets_go(layer)
    finally:
        layer.close_sync()


def test_threads_of_one_process_take_turns(prefix):
    """Two threads, each with its own event loop (as async_to_sync runs them), one sending and
    one receiving on the same layer: nothing lost, nothing twice, in order."""
    layer = IPCChannelLayer(prefix=prefix, capacity=10_000)
    count = 2000
    received: list[int] = []

    async def send_all():
        for index in range(count):
            await layer.send("lock.threads", {"type": "test.n", "n": index})

    async def receive_all():
        for _ in range(count):
            received.append((await layer.receive("lock.threads"))["n"])

    receiver = threading.Thread(target=lambda: asyncio.run(asyncio.wait_for(receive_all(), 60)))
    sender = threading.Thread(target=lambda: asyncio.run(send_all()))
    try:
        receiver.start()
        sender.start()
        sender.join(60)
        receiver.join(60)
        assert received == list(range(count))
        assert check(layer._current().segment) == []
    finally:
        layer.close_sync()
