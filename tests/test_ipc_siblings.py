"""A process's channels ('p!x') leaving their counter's sibling list, in any order.

Each channel links to the sibling before it as well as the one after (layout.KIND_CHANNEL,
fields D and G), so leaving the list is O(1): it reads and writes only its neighbours. A list
walked from its head instead made deleting a process's channels oldest-first quadratic (each
deletion walked past every newer sibling). Tested through behaviour, not time: a deletion
still works with the rest of the list made unreadable, and the checker (which verifies the
links both ways) passes after every step, in the C and the pure-Python hot path alike.
"""

from __future__ import annotations

import pytest

from reference_layers.ipc import IPCChannelLayer, native
from reference_layers.ipc import layout as L
from reference_layers.ipc.consistency import check
from tests.helpers import run

from .ipc_helpers import NO_C_HOT_PATH, removal_orders, remove_segment, unique_prefix

pytestmark = pytest.mark.timeout(120)

STEPS = [pytest.param("c", marks=pytest.mark.skipif(not native.AVAILABLE, reason=NO_C_HOT_PATH)), "python"]


@pytest.fixture(params=STEPS)
def layer(request):
    prefix = unique_prefix()
    layer = IPCChannelLayer(prefix=prefix, capacity=10_000)
    if request.param == "python":
        layer._current().ops.hot.core = None  # the pure-Python hot path (and the general one)
    yield layer
    layer.close_sync()
    remove_segment(prefix)


def _channels(layer, count: int) -> list[str]:
    """``count`` channels of this process, oldest first, each holding one message."""
    names = [run(layer.new_channel()) for _ in range(count)]
    for n, name in enumerate(names):
        run(layer.send(name, {"type": "test.sibling", "n": n}))
    return names


def _process(channel: str) -> bytes:
    """The name of the counter all of a process's channels share ('p!')."""
    return channel[:channel.index("!") + 1].encode()


@pytest.mark.parametrize("order", list(removal_orders(12)))
def test_process_channels_leave_in_any_order_and_the_links_stay_right(layer, order):
    names = _channels(layer, 12)
    ops, segment = layer._current().ops, layer._current().segment
    for left, n in enumerate(removal_orders(12)[order], start=1):
        assert run(layer.receive(names[n]))["n"] == n  # its last message: the channel goes
        assert check(segment) == []
        assert ops.held(names[0].encode()) == 12 - left  # what the process's channels hold
    assert ops.hot.hashed.find(L.KIND_COUNTER, _process(names[0])) == L.NIL  # the last one took the counter


def test_a_channel_leaving_touches_only_its_neighbours(layer):
    """The oldest channel is last in the list: a walk from the head would meet every other
    sibling first. With the head link cut, only a deletion through the back link succeeds."""
    names = _channels(layer, 64)
    segment = layer._current().segment
    words, hashed = segment.words, layer._current().ops.hot.hashed
    head_word = (segment.layout.entry(hashed.find(L.KIND_COUNTER, _process(names[0]))) + L.E_D) >> 2
    with segment.locked():
        head, words[head_word] = words[head_word], L.NIL
    try:
        assert run(layer.receive(names[0]))["n"] == 0
    finally:
        with segment.locked():
            words[head_word] = head
    assert check(segment) == []
    assert [run(layer.receive(name))["n"] for name in names[1:]] == list(range(1, 64))
    assert check(segment) == []
