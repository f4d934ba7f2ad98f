"""IPC groups: a group_add or group_discard finds its membership at once, in a group of any size.

A chat room is joined and left all the time, each change with the segment lock held (every
process waits on it). Each member is hashed by its group and channel and links to the member
before it as well as the one after (groups.py), so a change reads and writes only its
neighbours. Tested through behaviour, not time: a join, a renewal and a leave still work with
the group's member list made unreadable, and the checker (which verifies the links both ways
and that every member sits in its own bucket) passes after every step.
"""

from __future__ import annotations

import time

import pytest

from reference_layers.ipc import IPCChannelLayer
from reference_layers.ipc import layout as L
from reference_layers.ipc.consistency import check
from tests.helpers import run

from .ipc_helpers import removal_orders, remove_segment, unique_prefix

pytestmark = pytest.mark.timeout(120)

GROUP = "room"


@pytest.fixture
def layer():
    prefix = unique_prefix()
    layer = IPCChannelLayer(prefix=prefix, capacity=10_000)
    yield layer
    layer.close_sync()
    remove_segment(prefix)


def _members(layer, count: int) -> list[str]:
    names = [f"room.member-{n}" for n in range(count)]
    for name in names:
        run(layer.group_add(GROUP, name))
    return names


def _reached(layer, names: list[str], n: int) -> list[str]:
    """The members that group_send ``n`` reached (each receives what it has)."""
    run(layer.group_send(GROUP, {"type": "test.room", "n": n}))
    reached = []
    for name in names:
        waiting = run(layer.statistics([name])).channels[name].waiting
        if waiting:
            assert waiting == 1
            assert run(layer.receive(name))["n"] == n
            reached.append(name)
    return reached


@pytest.mark.parametrize("order", list(removal_orders(12)))
def test_members_leave_in_any_order_and_the_links_stay_right(layer, order):
    names = _members(layer, 12)
    segment = layer._current().segment
    left = []
    for n in removal_orders(12)[order]:
        run(layer.group_discard(GROUP, names[n]))
        left.append(names[n])
        assert check(segment) == []
        assert sorted(_reached(layer, names, n)) == sorted(set(names) - set(left))
    assert layer._current().ops.hot.hashed.find(L.KIND_GROUP, GROUP.encode()) == L.NIL  # the last took the group


def test_adding_a_member_again_renews_it_and_lists_it_once(layer):
    names = _members(layer, 5)
    run(layer.group_add(GROUP, names[2]))
    assert check(layer._current().segment) == []
    assert sorted(_reached(layer, names, 0)) == sorted(names)  # each once: one copy each


def test_a_change_to_a_group_touches_only_the_neighbours_of_its_member(layer):
    """With the group's head link cut, a walk of its list would find no member: a renewal,
    a leave and a join that still work found their member (or its absence) by its hash."""
    names = _members(layer, 64)
    segment = layer._current().segment
    words, hashed = segment.words, layer._current().ops.hot.hashed
    head_word = (segment.layout.entry(hashed.find(L.KIND_GROUP, GROUP.encode())) + L.E_A) >> 2
    ops = layer._current().ops
    with segment.locked():
        head, words[head_word] = words[head_word], L.NIL
    try:
        later = time.monotonic() + 3600
        ops.group_add(GROUP.encode(), names[10].encode(), later)  # renewed where it is
        ops.group_discard(GROUP.encode(), names[20].encode())  # the one before and after it relinked
    finally:
        with segment.locked():
            words[head_word] = head
    assert check(segment) == []
    assert sorted(_reached(layer, names, 1)) == sorted(set(names) - {names[20]})
    run(layer.group_add(GROUP, names[20]))
    assert check(segment) == []
    assert sorted(_reached(layer, names, 2)) == sorted(names)


def test_expired_members_go_and_the_others_stay_reachable(layer):
    short = IPCChannelLayer(prefix=layer.prefix, capacity=10_000, group_expiry=1)
    try:
        names = _members(layer, 6)
        shortlived = [f"room.brief-{n}" for n in range(4)]
        for name in shortlived:
            run(short.group_add(GROUP, name))
        segment = layer._current().segment
        ops = layer._current().ops
        now = time.monotonic()
        with segment.locked():  # what a group_send two seconds on would find: the brief ones expired
            tx = segment.transaction("look")
            assert sorted(ops.store.group_members(tx, GROUP.encode(), now + 2)) == sorted(n.encode() for n in names)
            segment.commit(tx)
        assert check(segment) == []
        for name in shortlived:  # gone from their buckets too: a join makes them anew
            run(short.group_add(GROUP, name))
        assert check(segment) == []
        assert sorted(_reached(layer, names + shortlived, 3)) == sorted(names + shortlived)
    finally:
        short.close_sync()
