"""ChannelNamer: short local names (a count), still unique in a forked child; CheckedChannels:
the channels a layer's receive checked, kept within bounds."""

from __future__ import annotations

import multiprocessing

from reference_layers.core.names import ChannelNamer, CheckedChannels, check_channel_name

NAMER = ChannelNamer()  # made in this process; forked children inherit it


def _child_names(queue) -> None:
    queue.put([NAMER.new_channel() for _ in range(3)])


def test_local_names_are_a_short_count_after_the_client_prefix():
    namer = ChannelNamer()
    names = [namer.new_channel("chat") for _ in range(20)]
    assert len(set(names)) == 20
    assert all(check_channel_name(name) == name for name in names)
    assert all(name.startswith(f"chat.{namer.client_prefix}!") for name in names)
    assert max(len(name.partition("!")[2]) for name in names) <= 2


def test_a_forked_child_does_not_repeat_its_parents_names():
    before = [NAMER.new_channel() for _ in range(3)]
    queue = multiprocessing.get_context("fork").Queue()
    children = [multiprocessing.get_context("fork").Process(target=_child_names, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    from_children = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)
    after = [NAMER.new_channel() for _ in range(3)]
    every = [*before, *after, *from_children[0], *from_children[1]]
    assert len(set(every)) == len(every) == 12
    assert all(name.startswith(f"specific.{NAMER.client_prefix}!") for name in every)


def test_checked_channels_are_forgotten_all_at_once_past_ten_thousand():
    checked = CheckedChannels()
    for n in range(10_000):
        checked.remember(f"chat.{n}", "key")
    assert len(checked) == 10_000 and checked.get("chat.0") == "key"
    checked.remember("chat.new", "its key")
    assert dict(checked) == {"chat.new": "its key"}
