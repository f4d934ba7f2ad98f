"""A process SIGKILLed anywhere inside the IPC layer leaves the others running and the segment
consistent: holding the lock, mid-send, mid-receive, mid-group_send, mid-flush, or waiting.

The child is an independent process (``tests/ipc_child.py``) that stops at a real point of
the layer's code: the segment lock taken through the layer's own locking, or a named point of
a commit (``ASGI_IPC_TEST_PAUSE_AT``): "before-commit" (journal written, not yet committed) or
"mid-apply" (committed, half applied: the survivor must finish it from the journal).

Every test runs twice: with the children on the C hot path (``_hotcore.c``, which stops at
the same points) and on the pure-Python one.

These tests look inside the segment on purpose (``check()``, ``ops.held()``): what a crash
must not break is its structure and its capacity counts (for ``p!x`` the count that every
``p!*`` shares), and ``statistics()`` shows neither; it counts the messages in the queues.
"""

from __future__ import annotations

import asyncio

import pytest

from reference_layers.ipc import IPCChannelLayer, native
from reference_layers.ipc.consistency import check
from tests.helpers import run

from .ipc_helpers import NO_C_HOT_PATH, Child, remove_segment, send_past_a_killed_lock_holder, unique_prefix

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True, params=["c", "python"])
def hot_path(request, monkeypatch):
    """Which hot path the children take (they read ASGI_IPC_PURE_PYTHON as they start)."""
    if request.param == "c":
        if not native.AVAILABLE:
            pytest.skip(NO_C_HOT_PATH)
        monkeypatch.delenv("ASGI_IPC_PURE_PYTHON", raising=False)
    else:
        monkeypatch.setenv("ASGI_IPC_PURE_PYTHON", "1")
    return request.param


@pytest.fixture
def survivor():
    prefix = unique_prefix("crash")
    layer = IPCChannelLayer(prefix=prefix)
    yield layer
    asyncio.run(layer.flush())
    layer.close_sync()
    remove_segment(prefix)


async def _send_all(layer, channel, count, tag):
    for index in range(count):
        await layer.send(channel, {"type": "test.kept", "tag": tag, "index": index})


async def _receive(layer, channel):
    """A receive without the public check that refuses another object's 'p!x' names: here the
    survivor takes over a dead child's process-specific channels on purpose."""
    return layer.codec.decode(await layer._receive(channel))


async def _receive_all(layer, channel, count):
    return [(await _receive(layer, channel))["index"] for _ in range(count)]


def _assert_survivor_carries_on(layer, kept_channel, kept):
    """Nothing it had is lost, the segment is consistent, and new traffic flows."""
    assert check(layer._current().segment) == []
    assert run(_receive_all(layer, kept_channel, kept)) == list(range(kept))

    async def fresh_round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "test.after", "n": 1})
        return await layer.receive(channel)

    assert run(fresh_round_trip()) == {"type": "test.after", "n": 1}
    assert check(layer._current().segment) == []


def test_killed_while_holding_the_lock_releases_it(survivor):
    run(_send_all(survivor, "crash.kept", 5, "before"))
    send_past_a_killed_lock_holder(survivor, "crash.kept", {"type": "test.kept", "index": 5})
    _assert_survivor_carries_on(survivor, "crash.kept", 6)


@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_send(survivor, point):
    run(_send_all(survivor, "crash.kept", 3, "before"))
    run(_send_all(survivor, "crash.target", 2, "before"))
    child = Child(survivor.prefix, "send", "crash.target", pause_at=f"send:{point}")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    received = run(_receive_all(survivor, "crash.target", 2))
    assert received == [0, 1]
    if point == "mid-apply":  # committed: the survivor finished it, the message is whole
        assert run(survivor.receive("crash.target")) == {"type": "child.message", "from": "child"}
    assert survivor._current().ops.held(b"crash.target") == 0
    _assert_survivor_carries_on(survivor, "crash.kept", 3)


@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_the_next_send_after_the_kill_takes_over_the_dead_holders_lock_and_repairs_first(survivor, point):
    """The survivor's first step after the kill is a send to a channel it knows (cached),
    which the C core runs whole: its trylock finds the holder dead (EOWNERDEAD), and the
    segment is repaired (a committed send finished from the journal) before its own send."""
    run(_send_all(survivor, "crash.cached", 2, "before"))
    run(_send_all(survivor, "crash.target", 2, "before"))
    child = Child(survivor.prefix, "send", "crash.target", pause_at=f"send:{point}")
    child.wait_paused()
    child.kill()
    run(survivor.send("crash.cached", {"type": "test.kept", "index": 2}))
    assert check(survivor._current().segment) == []
    assert run(_receive_all(survivor, "crash.cached", 3)) == [0, 1, 2]
    assert run(_receive_all(survivor, "crash.target", 2)) == [0, 1]
    if point == "mid-apply":
        assert run(survivor.receive("crash.target")) == {"type": "child.message", "from": "child"}
    _assert_survivor_carries_on(survivor, "crash.target", 0)


@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_receive(survivor, point):
    run(_send_all(survivor, "crash.kept", 3, "before"))
    run(_send_all(survivor, "crash.target", 3, "target"))
    child = Child(survivor.prefix, "receive", "crash.target", pause_at=f"receive:{point}")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    # before the commit the child took nothing; after it, the first message was the child's
    expected = [0, 1, 2] if point == "before-commit" else [1, 2]
    assert run(_receive_all(survivor, "crash.target", len(expected))) == expected
    _assert_survivor_carries_on(survivor, "crash.kept", 3)


# The two tests above change a channel that exists and stays; these two create the channel
# (for 'p!x', also the counter entry all 'p!*' share) or delete it (and that counter, when it
# was the last 'p!*' channel), in the same commit points. On the hot path since the hot path
# creates and deletes entries itself; the journal must carry every one of those changes.
CREATED_OR_DELETED = ["crash.fresh", "crash.proc!fresh"]


@pytest.mark.parametrize("channel", CREATED_OR_DELETED)
@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_send_that_creates_the_channel(survivor, point, channel):
    run(_send_all(survivor, "crash.kept", 3, "before"))
    child = Child(survivor.prefix, "send", channel, pause_at=f"send:{point}")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    if point == "mid-apply":
        assert run(_receive(survivor, channel)) == {"type": "child.message", "from": "child"}
    assert survivor._current().ops.held(channel.encode()) == 0
    _assert_survivor_carries_on(survivor, "crash.kept", 3)
    run(_send_all(survivor, channel, 2, "after"))  # the entries work again after the repair
    assert run(_receive_all(survivor, channel, 2)) == [0, 1]
    assert check(survivor._current().segment) == []


@pytest.mark.parametrize("channel", CREATED_OR_DELETED)
@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_receive_of_the_last_message(survivor, point, channel):
    run(_send_all(survivor, "crash.kept", 3, "before"))
    run(_send_all(survivor, channel, 1, "target"))
    child = Child(survivor.prefix, "receive", channel, pause_at=f"receive:{point}")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    expected = 1 if point == "before-commit" else 0  # after the commit the child had taken it
    assert survivor._current().ops.held(channel.encode()) == expected
    assert run(_receive_all(survivor, channel, expected)) == [0] * expected
    _assert_survivor_carries_on(survivor, "crash.kept", 3)
    run(_send_all(survivor, channel, 2, "after"))
    assert run(_receive_all(survivor, channel, 2)) == [0, 1]
    assert check(survivor._current().segment) == []


@pytest.mark.parametrize("channel", CREATED_OR_DELETED)
@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_registering_a_first_wait_that_creates_the_channel(survivor, point, channel):
    """A receive's first wait on a channel registers its loop there, making the channel's entry
    (and its counter's, and the waiter's) in one commit of its own (HotPath.register)."""
    run(_send_all(survivor, "crash.kept", 3, "before"))
    child = Child(survivor.prefix, "wait", channel, pause_at=f"register:{point}")
    assert child.wait_paused() == f"ASGI_IPC_PAUSED register:{point}"  # not the wait after it
    child.kill()
    assert check(survivor._current().segment) == []
    _assert_survivor_carries_on(survivor, "crash.kept", 3)
    run(_send_all(survivor, channel, 2, "after"))  # a waiter the dead child left is dropped
    assert run(_receive_all(survivor, channel, 2)) == [0, 1]
    assert check(survivor._current().segment) == []


def test_killed_mid_receive_of_one_of_several_process_channels(survivor):
    """Deleting one 'p!x' of several unlinks it from the middle of the counter's sibling list."""
    names = ["crash.proc!a", "crash.proc!b", "crash.proc!c"]
    for name in names:
        run(_send_all(survivor, name, 1, "target"))
    child = Child(survivor.prefix, "receive", "crash.proc!b", pause_at="receive:mid-apply")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    assert survivor._current().ops.held(b"crash.proc!b") == 2  # 'crash.proc!' counts a and c
    assert [run(_receive(survivor, name))["index"] for name in ("crash.proc!a", "crash.proc!c")] == [0, 0]
    assert survivor._current().ops.held(b"crash.proc!a") == 0
    assert check(survivor._current().segment) == []


def test_killed_mid_group_send(survivor):
    async def setup():
        await survivor.group_add("crash-group", "crash.member-a")
        await survivor.group_add("crash-group", "crash.member-b")
        await _send_all(survivor, "crash.kept", 3, "before")

    run(setup())
    child = Child(survivor.prefix, "group_send", "crash-group", pause_at="group_send:mid-apply")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    _assert_survivor_carries_on(survivor, "crash.kept", 3)

    # The child died inside the commit of its first member's copy: repair finished that
    # one copy; the other member never got one. Our own group_send reaches both.
    run(survivor.group_send("crash-group", {"type": "test.group"}))
    counts = sorted(len(run(_drain(survivor, name))) for name in ("crash.member-a", "crash.member-b"))
    assert counts == [1, 2]
    assert check(survivor._current().segment) == []


@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_group_send_to_a_processs_inbox(survivor, point):
    """A group_send to members of another process writes one copy in that process's inbox
    (ipc/inbox.py): repair finishes it or drops it whole, its count with it."""
    async def setup():
        for name in ("crash.proc!a", "crash.proc!b"):
            await survivor.group_add("crash-inbox", name)

    run(setup())
    child = Child(survivor.prefix, "group_send", "crash-inbox", pause_at=f"group_send:{point}")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    copies = 1 if point == "mid-apply" else 0
    assert survivor._current().ops.held(b"crash.proc!a") == 2 * copies
    got = [len(run(_drain(survivor, name, _receive))) for name in ("crash.proc!a", "crash.proc!b")]
    assert got == [copies, copies]
    assert survivor._current().ops.held(b"crash.proc!a") == 0
    assert check(survivor._current().segment) == []


@pytest.mark.parametrize("point", ["before-commit", "mid-apply"])
def test_killed_mid_taking_an_inbox_apart(survivor, point):
    """The first receive of a process after a group_send takes its inbox apart: killed there,
    no copy is lost (repair finishes it, or the inbox is as it was)."""
    async def setup():
        for name in ("crash.proc!a", "crash.proc!b"):
            await survivor.group_add("crash-inbox", name)
        await survivor.group_send("crash-inbox", {"type": "test.group"})

    run(setup())
    child = Child(survivor.prefix, "receive", "crash.proc!a", pause_at=f"inbox:{point}")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []
    assert survivor._current().ops.held(b"crash.proc!a") == 2
    got = [run(_receive(survivor, name))["type"] for name in ("crash.proc!a", "crash.proc!b")]
    assert got == ["test.group", "test.group"]
    assert survivor._current().ops.held(b"crash.proc!a") == 0
    assert check(survivor._current().segment) == []


async def _drain(layer, channel, receive=None):
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for((receive or IPCChannelLayer.receive)(layer, channel), 0.3))
        except asyncio.TimeoutError:
            return got


def test_killed_mid_flush_the_flush_is_completed(survivor):
    run(_send_all(survivor, "crash.target", 3, "before"))
    child = Child(survivor.prefix, "flush", pause_at="flush:mid-format")
    child.wait_paused()
    child.kill()
    assert check(survivor._current().segment) == []

    async def nothing_left_and_still_works():
        try:
            await asyncio.wait_for(survivor.receive("crash.target"), 0.3)
        except asyncio.TimeoutError:
            pass
        else:
            raise AssertionError("a message survived a flush that was completed by repair")

    run(nothing_left_and_still_works())
    run(_send_all(survivor, "crash.kept", 2, "after"))
    _assert_survivor_carries_on(survivor, "crash.kept", 2)


def test_killed_while_waiting_in_receive(survivor):
    run(_send_all(survivor, "crash.kept", 3, "before"))
    child = Child(survivor.prefix, "wait", "crash.waited")
    child.wait_paused()
    child.kill()
    run(_send_all(survivor, "crash.waited", 2, "after"))  # its registration is stale: no hang
    assert run(_receive_all(survivor, "crash.waited", 2)) == [0, 1]
    _assert_survivor_carries_on(survivor, "crash.kept", 3)
