"""MSG-*: what a message may hold, what send refuses, and what the receiver gets back.

Refusals are checked without waiting for silence: after the refused sends a marker is sent,
and the marker must be the first message the channel yields (a half-sent message would
come first, because channels are FIFO).
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
from typing import Any, Callable

import pytest

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    current_settings,
    declared_size_limit,
    expect_message,
    fresh_group,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


async def _refusal_problem(layer: Layer, channel: str, message: Any) -> str | None:
    """Why sending ``message`` was not a proper refusal; None if send raised a real exception.

    An AssertionError does not count in strict mode: ``python -O`` strips asserts, and the
    bad message then goes out.
    """
    try:
        await asyncio.wait_for(layer.send(channel, message), current_settings().delivery_timeout)
    except asyncio.TimeoutError:
        return f"send({_short(message)}) neither raised nor returned within {current_settings().delivery_timeout:g} s"
    except AssertionError as exc:
        if current_settings().strict:
            return (f"send({_short(message)}) raised only AssertionError ({exc}), which python -O "
                    "removes; raise a real exception (TypeError preferred)")
        return None
    except Exception:  # noqa: BLE001 - any real exception is a refusal
        return None
    return f"send({_short(message)}) was accepted"


async def _assert_first_message_is_a_fresh_marker(layer: Layer, channel: str) -> None:
    """Proves the refused sends left nothing on ``channel``, without waiting for silence."""
    marker = {"type": "test.marker", "token": secrets.token_hex(8)}
    await layer.send(channel, marker)
    first = await expect_message(layer, channel)
    assert first == marker, f"a refused message was delivered anyway: first message received was {_short(first)}"


# --- MSG-1 ----------------------------------------------------------------------------------

@requirement("MSG-1")
async def test_sending_anything_but_a_dict_raises_and_sends_nothing(layer: Layer) -> None:
    channel = await layer.new_channel()
    not_dicts = [["test.list", 1], "test.text", None, b"test.bytes", [("type", "test.pairs")], ("type", "x")]
    problems = [p for p in [await _refusal_problem(layer, channel, value) for value in not_dicts] if p]
    assert not problems, "non-dict messages must be refused:\n" + "\n".join(problems)
    await _assert_first_message_is_a_fresh_marker(layer, channel)


# --- MSG-2 ----------------------------------------------------------------------------------

def _difference(sent: Any, got: Any, path: str = "message") -> str | None:
    """Where ``got`` differs from ``sent`` in value or type (a tuple may come back as a list)."""
    allowed = (list, tuple) if isinstance(sent, tuple) else (type(sent),)
    if type(got) not in allowed:
        return f"{path}: sent {type(sent).__name__} {_short(sent)}, received {type(got).__name__} {_short(got)}"
    if isinstance(sent, dict):
        if set(sent) != set(got):
            return f"{path}: sent keys {sorted(sent)}, received keys {sorted(got, key=repr)}"
        for key in sent:
            found = _difference(sent[key], got[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(sent, (list, tuple)):
        if len(sent) != len(got):
            return f"{path}: sent {len(sent)} items, received {len(got)}"
        for index, (left, right) in enumerate(zip(sent, got)):
            found = _difference(left, right, f"{path}[{index}]")
            if found:
                return found
        return None
    if sent != got:
        return f"{path}: sent {_short(sent)}, received {_short(got)}"
    return None


@requirement("MSG-2")
async def test_every_allowed_value_type_arrives_with_its_value_and_type(layer: Layer) -> None:
    channel = await layer.new_channel()
    message = {
        "type": "test.types",
        "bytes": b"\x00\xff\x80 not utf-8",
        "empty_bytes": b"",
        "text": "héllo wörld ✓ \x00",
        "empty_text": "",
        "int_max": INT64_MAX,
        "int_min": INT64_MIN,
        "zero": 0,
        "float": 0.1 + 0.2,
        "big_float": -1.5e300,
        "list": [1, "two", b"three", None, 4.5, [True]],
        "empty_list": [],
        "nested": {"a": {"b": [{"c": b"deep", "d": {"e": False}}]}},
        "empty_dict": {},
        "true": True,
        "false": False,
        "none": None,
    }
    await layer.send(channel, message)
    received = await expect_message(layer, channel)
    difference = _difference(message, received)
    assert difference is None, f"the message did not round-trip: {difference}"


@requirement("MSG-2")
async def test_tuples_arrive_as_lists_or_tuples_with_the_same_items(layer: Layer) -> None:
    channel = await layer.new_channel()
    message = {"type": "test.tuples", "pair": (1, b"two"), "nested": {"t": ("a", (2, 3))}}
    await layer.send(channel, message)
    received = await expect_message(layer, channel)
    difference = _difference(message, received)
    assert difference is None, f"the message did not round-trip: {difference}"


# --- MSG-3 ----------------------------------------------------------------------------------

UNCARRIABLE: dict[str, Callable[[], object]] = {
    "set": lambda: {1, 2},
    "object": object,
    "datetime": lambda: datetime.datetime(2024, 1, 2, 3, 4, 5),
    "int 2**64": lambda: 2**64,
    "int -(2**63)-1": lambda: -(2**63) - 1,
    "non-str key": lambda: {1: "one"},
}


def _deep(value: Any) -> Message:
    return {"outer": [{"middle": {"inner": [0, value]}}]}


@requirement("MSG-3")
async def test_values_the_wire_cannot_carry_are_refused_at_send_and_send_nothing(layer: Layer) -> None:
    channel = await layer.new_channel()
    problems = []
    for label, make in UNCARRIABLE.items():
        for where, message in (("top level", {"type": "test.bad", "value": make()}),
                               ("nested deep", {"type": "test.bad", "value": _deep(make())})):
            problem = await _refusal_problem(layer, channel, message)
            if problem:
                problems.append(f"{label} at {where}: {problem}")
    assert not problems, "values the wire cannot carry must be refused at send:\n" + "\n".join(problems)
    await _assert_first_message_is_a_fresh_marker(layer, channel)


# --- MSG-4 ----------------------------------------------------------------------------------

@requirement("MSG-4")
async def test_a_message_of_one_megabyte_arrives_intact(layer: Layer) -> None:
    channel = await layer.new_channel()
    message = {
        "type": "test.big",
        "text": secrets.token_hex(500_000),  # 1,000,000 characters that do not compress
        "items": [secrets.token_hex(4) for _ in range(1000)],
    }
    await layer.send(channel, message)
    received = await expect_message(layer, channel)
    assert received == message, "the 1 MB message arrived changed"


# --- MSG-5 ----------------------------------------------------------------------------------

@requirement("MSG-5")
async def test_a_message_over_the_declared_size_limit_raises_message_too_large(layer: Layer, asgi_target: LayerTarget) -> None:
    limit, too_large = declared_size_limit(asgi_target)
    channel = await layer.new_channel()
    with pytest.raises(Exception) as caught:
        await layer.send(channel, {"type": "test.oversize", "payload": b"x" * (limit + 1)})
    assert isinstance(caught.value, too_large), (
        f"an oversize send raised {type(caught.value).__name__}: {caught.value}, not {too_large.__name__}")
    await _assert_first_message_is_a_fresh_marker(layer, channel)


# --- MSG-6 ----------------------------------------------------------------------------------

def _mutable_message() -> Message:
    return {"type": "test.copy", "items": [1, 2], "inner": {"key": "before", "list": ["a"]}}


def _mutate(message: Message) -> None:
    message["items"].append(3)
    message["inner"]["key"] = "after"
    message["inner"]["list"].append("b")
    message["extra"] = True


@requirement("MSG-6")
async def test_changing_the_dict_after_sending_it_does_not_change_what_arrives(layer: Layer) -> None:
    channel = await layer.new_channel()
    message = _mutable_message()
    await layer.send(channel, message)
    _mutate(message)
    received = await expect_message(layer, channel)
    assert received == _mutable_message(), f"the receiver saw changes made after send: {received!r}"


@requirement("MSG-6")
async def test_two_receivers_of_one_sent_dict_get_independent_copies(layer: Layer) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    message = _mutable_message()
    await layer.send(first, message)
    await layer.send(second, message)
    one = await expect_message(layer, first)
    _mutate(one)
    other = await expect_message(layer, second)
    assert other == _mutable_message(), f"changing one received copy changed the other: {other!r}"


@requirement("MSG-6", needs=["groups"])
async def test_each_group_member_gets_its_own_copy(layer: Layer) -> None:
    group, first, second = fresh_group(), await layer.new_channel(), await layer.new_channel()
    await layer.group_add(group, first)
    await layer.group_add(group, second)
    await layer.group_send(group, _mutable_message())
    one = await expect_message(layer, first)
    other = await expect_message(layer, second)
    assert one is not other, "both group members received the very same dict object"
    _mutate(one)
    assert other == _mutable_message(), f"changing one member's copy changed the other's: {other!r}"


@requirement("MSG-6", needs=["groups"])
async def test_members_of_a_group_get_independent_copies_of_a_flat_message(layer: Layer) -> None:
    """A flat message (no list or dict inside) may be decoded once for many members: each
    must still get a dict of its own, whatever the members before it did to theirs."""
    group = fresh_group()
    members = [await layer.new_channel() for _ in range(4)]
    for member in members:
        await layer.group_add(group, member)
    original = {"type": "test.flat", "text": "hello", "n": 1, "raw": b"\x00\x01", "ok": True}
    await layer.group_send(group, dict(original))
    seen: list[Message] = []
    for member in members:
        received = await expect_message(layer, member)
        assert received == original, f"a member got {received!r} after others changed theirs"
        assert all(received is not earlier for earlier in seen), "two members received the very same dict"
        seen.append(received)
        received["text"] = "changed"
        received["extra"] = True
        del received["n"]

