"""LocalBook: a layer object's own members per process queue and group, in the order they
joined, the expired ones dropped as a group_send reads them. No broker needed."""

from __future__ import annotations

import time

from reference_layers.rabbitmq.local_book import LocalBook


def test_members_come_in_the_order_they_joined_and_joining_again_moves_one_to_the_end():
    book, later = LocalBook(), time.monotonic() + 60
    for n, channel in enumerate(["p!a", "p!b", "p!c"]):
        book.add("q!", "chat", channel, later + n)
    book.add("q!", "chat", "p!a", later + 10)
    assert book.members("q!", "chat") == ["p!b", "p!c", "p!a"]
    assert book.queues_of("chat") == ["q!"] and book.queues_of("other") == [] and book.members("q!", "other") == []


def test_expired_members_are_dropped_and_the_live_ones_kept():
    book, now = LocalBook(), time.monotonic()
    book.add("q!", "chat", "p!old", now - 2)
    book.add("q!", "chat", "p!older-too", now - 1)
    book.add("q!", "chat", "p!live", now + 60)
    book.add("r!", "chat", "p!gone", now - 1)
    assert book.members("q!", "chat") == ["p!live"]
    assert book.queues_of("chat") == ["q!"]  # r!'s only member expired


def test_a_member_added_with_an_earlier_deadline_than_the_last_still_expires_first():
    book, now = LocalBook(), time.monotonic()
    book.add("q!", "chat", "p!long", now + 60)
    book.add("q!", "chat", "p!short", now - 1)  # a shorter group_expiry than the member before it
    assert book.members("q!", "chat") == ["p!long"]


def test_discard_says_when_a_queue_has_no_member_of_the_group_left():
    book, later = LocalBook(), time.monotonic() + 60
    book.add("q!", "chat", "p!a", later)
    book.add("q!", "chat", "p!b", later)
    assert book.discard("q!", "chat", "p!a") is False
    assert book.discard("q!", "chat", "p!b") is True and book.members("q!", "chat") == []
