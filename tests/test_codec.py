"""MessageCodec.decode: every call gives a dict of the caller's own, even when copies of one
message are decoded from a kept flat dict (group copies read one after another)."""

from __future__ import annotations

import pytest

from reference_layers.core.codec import MessageCodec

FLAT = {"type": "chat.message", "text": "hello", "n": 7, "ratio": 0.5, "raw": b"\x00", "ok": None}
NESTED = {"type": "chat.message", "items": [1, 2], "inner": {"key": "before"}}


@pytest.fixture(params=[None, ["a secret"]], ids=["plain", "encrypted"])
def codec(request) -> MessageCodec:
    return MessageCodec(encryption_keys=request.param)


def test_copies_of_one_flat_message_are_equal_dicts_of_their_own(codec):
    data = codec.encode(FLAT)
    copies = [codec.decode(data) for _ in range(4)]
    assert all(copy == FLAT for copy in copies)
    assert len({id(copy) for copy in copies}) == 4
    for copy in copies:
        copy["text"] = "changed"
        del copy["n"]
    assert codec.decode(data) == FLAT


def test_copies_of_a_nested_message_share_no_list_or_dict(codec):
    data = codec.encode(NESTED)
    first, second = codec.decode(data), codec.decode(data)
    first["items"].append(3)
    first["inner"]["key"] = "after"
    third = codec.decode(data)
    assert second == NESTED and third == NESTED
    assert second["items"] is not third["items"] and second["inner"] is not third["inner"]


def test_equal_bytes_from_another_object_decode_to_the_same_message(codec):
    data = codec.encode(FLAT)
    twin = bytes(bytearray(data))
    assert twin is not data
    codec.decode(data)
    codec.decode(data)
    assert codec.decode(twin) == FLAT


def test_messages_taking_turns_each_decode_as_themselves(codec):
    other = {"type": "chat.other", "text": "bye"}
    one, two = codec.encode(FLAT), codec.encode(other)
    got = [codec.decode(data) for data in (one, one, two, one, one, two, two)]
    assert got == [FLAT, FLAT, other, FLAT, FLAT, other, other]
