"""The Redis layer's copy shelf and pop reader, with no server: a late fan-out's copies held as
one entry for all its members, and every channel's copies still taken oldest first."""

from __future__ import annotations

from reference_layers.redis.copies import Copy, Counted, HeldEntry, read_pop
from reference_layers.redis.shelf import CopyShelf

KEY = "asgi:p!proc."
A, B, C = KEY + "a", KEY + "b", KEY + "c"
NOW = 100.0


def always(now: float) -> bool:
    return True


def entry(members: list[str], first_id: int, deadline: float = NOW + 60, body: bytes = b"fan") -> HeldEntry:
    return HeldEntry(members, list(members), KEY, first_id, deadline, b"999", body, 0)


def copy(channel: str, message_id: int, body: bytes = b"own", deadline: float = NOW + 60) -> Copy:
    return Copy(channel, KEY, message_id, deadline, b"999", body, Counted.HERE, 0)


def shelf() -> CopyShelf:
    return CopyShelf(lambda copy: None, lambda: NOW)


def ids(shelf: CopyShelf, channel: str) -> list[int]:
    taken = []
    while (got := shelf.take(channel, NOW)) is not None:
        taken.append(got.message_id)
    return taken


def test_each_member_of_a_held_entry_takes_its_own_copy_with_its_own_id():
    held = shelf()
    held.put([entry([A, B, C], 10)], always)
    assert held.holds(A) and held.held_for(KEY, NOW) == 3
    assert (ids(held, A), ids(held, B), ids(held, C)) == ([10], [11], [12])
    assert not held and held.held_for(KEY, NOW) == 0


def test_a_copy_for_a_member_an_entry_holds_comes_after_the_entrys():
    held = shelf()
    held.put([entry([A, B], 10)], always)
    held.put([copy(B, 20), entry([B, C], 30)], always)
    assert ids(held, B) == [11, 20, 30]
    assert ids(held, A) == [10] and ids(held, C) == [31]


def test_an_entry_for_members_with_older_copies_holds_theirs_behind_them():
    held = shelf()
    held.put([copy(A, 5)], always)
    held.put([entry([A, B], 10)], always)
    assert held.held_for(KEY, NOW) == 3
    assert ids(held, A) == [5, 10] and ids(held, B) == [11]


def test_a_copy_put_back_goes_before_an_entry_that_came_meanwhile():
    held = shelf()
    held.put([copy(A, 5)], always)
    first = held.take(A, NOW)
    held.put([entry([A], 10)], always)
    held.restore(first)
    assert ids(held, A) == [5, 10]


def test_take_ready_gives_the_body_only_while_the_keys_flushes_are_heard():
    held = shelf()
    heard = {"now": False}
    held.put([entry([A, B], 10, body=b"hello")], lambda now: heard["now"])
    assert held.take_ready(A) is None and held.holds(A)
    heard["now"] = True
    assert held.take_ready(A) == b"hello" and not held.holds(A)
    assert held.held_for(KEY, NOW) == 1


def test_expired_entry_copies_are_dropped_and_no_longer_count():
    held = shelf()
    held.put([entry([A, B], 10, deadline=NOW + 1)], always)
    assert held.waiting(A, NOW) == (1, NOW + 1)
    assert held.held_keys(NOW + 2) == {} and not held
    assert held.take(B, NOW + 2) is None


def test_an_expired_copy_is_not_given_by_take_ready():
    held = CopyShelf(lambda copy: None, lambda: NOW + 5)
    held.put([entry([A], 10, deadline=NOW + 1)], always)
    assert held.take_ready(A) is None and not held.holds(A)


def test_a_flush_drops_what_entries_hold():
    held = shelf()
    held.put([entry([A, B], 10), copy(C, 20)], always)
    held.take(A, NOW)
    held.drop(lambda item: item.epoch == 0)
    assert not held and held.held_for(KEY, NOW) == 0 and held.channels() == []


def test_take_all_gives_an_entrys_copy_as_a_queue_entry_of_its_own():
    held = shelf()
    held.put([entry([A, B], 10, body=b"x")], always)
    held.put([copy(B, 20, body=b"y")], always)
    assert [c.entry for c in held.take_all(B)] == [b"999:11:x", b"999:20:y"]
    assert [c.channel for c in held.take_everything()] == [A] and not held


def _reply(names: list[str], first_id: int, body: bytes = b"m") -> list:
    local = ",".join(name[len(KEY):] for name in names).encode()
    return [b"1000", b"7", b"0", b"1", b"61000:%d+%d:%s:%s" % (first_id, len(names), local, body), b""]


def test_a_pop_holds_a_late_fan_out_as_one_entry_and_hands_the_member_that_waits():
    read = read_pop(_reply([A, B, C], 10), {B: 1}, KEY, NOW)
    assert read.messages == [(B, b"61000:11:m")]
    [held] = read.held
    assert isinstance(held, HeldEntry) and held.held == [A, C] and held.first_id == 10
    assert read.held_channels() == [A, C]


def test_a_pop_holds_a_waiting_members_copy_behind_the_copies_shelved_for_it():
    read = read_pop(_reply([A, B], 10), {B: 1}, KEY, NOW, shelved={B})
    assert read.messages == []
    assert read.held[0].held == [A, B]


def test_a_pop_with_many_members_waiting_hands_each_its_copy():
    names = [KEY + str(i) for i in range(20)]
    read = read_pop(_reply(names, 10), {name: 1 for name in names[:15]}, KEY, NOW)
    assert read.messages == [(name, b"61000:%d:m" % (10 + i)) for i, name in enumerate(names[:15])]
    assert [(c.channel, c.message_id) for c in read.held] == [(name, 25 + i) for i, name in enumerate(names[15:])]


def test_own_groups_know_the_keys_of_the_objects_members_until_the_last_leaves():
    from reference_layers.redis.own_groups import OwnGroups

    groups = OwnGroups()
    groups.added("room", KEY, A)
    groups.added("room", KEY, B)
    groups.added("room", "asgi:q!other.", "q!other.x")
    assert set(groups.keys_in("room")) == {KEY, "asgi:q!other."} and list(groups.keys_in("hall")) == []
    groups.discarded("room", KEY, A)
    assert KEY in groups.keys_in("room")
    groups.discarded("room", KEY, B)
    groups.discarded("room", KEY, C)  # never added: nothing to do
    assert list(groups.keys_in("room")) == ["asgi:q!other."]
    groups.forget_all()
    assert list(groups.keys_in("room")) == []


def test_a_copy_older_than_those_held_for_its_channel_is_taken_before_them():
    """A pop's reply may be read after the delivery of a later entry (deliveries.py): held in id
    order, whatever order they came in."""
    held = shelf()
    held.put([entry([A, B], 30)], always)  # a delivery
    held.put([copy(A, 12), copy(A, 20), copy(B, 25)], always)  # a pop's reply, read after it
    held.put([copy(A, 40)], always)
    assert ids(held, A) == [12, 20, 30, 40] and ids(held, B) == [25, 31]
