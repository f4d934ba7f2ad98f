"""NAME-*: which channel and group names are valid, and what new_channel() hands out.

Invalid names must raise TypeError at once in every method, receive included: a receive
that waits forever on a name no send can reach is a silent bug in the caller's code.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import random
import re
import secrets
import string
import sys
from typing import Any, Callable, Sequence

import pytest

from asgi_conformance.runner import requirement
from asgi_conformance.vocabulary import (
    Layer,
    LayerTarget,
    Message,
    any_channel,
    current_settings,
    expect_message,
    fresh_group,
    offers,
    process_prefix_of,
)

MAX_LENGTH = 99
VALID_PROCESS_SPECIFIC = re.compile(r"[A-Za-z0-9\-_.]+![A-Za-z0-9\-_.]*\Z")


def _padded(start: str, length: int) -> str:
    """``start`` plus filler, exactly ``length`` characters long."""
    return (start + "z" * length)[:length]


def _single_letter() -> str:
    return secrets.choice(string.ascii_letters)


async def _process_prefix(layer: Layer) -> str:
    """The non-local part (up to and including '!') of one of the layer's own new channels."""
    return process_prefix_of(await layer.new_channel())


async def _valid_channel_names(layer: Layer, target: LayerTarget) -> list[str]:
    """Valid names of every kind the layer offers: normal ones only where it has them."""
    token = secrets.token_hex(6)
    prefix = await _process_prefix(layer)
    names = [prefix + "Local-Part_9.x", prefix + "q"]
    if offers(target, "normal-channels"):
        names += [_single_letter(), f"asgi-test.AZaz09-_.{token}", _padded(f"asgi-test.long-{token}-", MAX_LENGTH)]
    if len(prefix) < MAX_LENGTH:
        names.append(_padded(prefix, MAX_LENGTH))
    return names


def _invalid_names(token: str) -> list[object]:
    """Names invalid for channels and groups alike."""
    return [
        f"has space-{token}",
        f"ünïcode-{token}",
        f"arabic-digit-{token}\u0663",
        f"at@sign-{token}",
        f"trailing-newline-{token}\n",
        _padded(f"asgi-test.too-long-{token}-", MAX_LENGTH + 1),
        "",
        f"bytes-{token}".encode(),
        42,
        None,
    ]


def _invalid_channel_names() -> list[object]:
    token = secrets.token_hex(4)
    return _invalid_names(token) + [f"two!bangs!{token}", f"unicode-local!é{token}"]


def _invalid_group_names() -> list[object]:
    return _invalid_names(secrets.token_hex(4))


async def _type_error_problem(call: Callable[[], object], what: str) -> str | None:
    """Why ``call()`` did not raise TypeError promptly (at the call or when awaited); None if it did."""
    try:
        pending = call()
        if not inspect.isawaitable(pending):
            return f"{what} returned {pending!r} instead of a coroutine"
        await asyncio.wait_for(pending, current_settings().delivery_timeout)
    except TypeError:
        return None
    except asyncio.TimeoutError:
        return f"{what} waited {current_settings().delivery_timeout:g} s instead of raising TypeError"
    except Exception as exc:  # noqa: BLE001
        return f"{what} raised {type(exc).__name__} ({exc}) instead of TypeError"
    return f"{what} was accepted"


async def _assert_all_raise_type_error(calls: list[tuple[str, Callable[[], object]]]) -> None:
    """Runs the calls concurrently (so hanging ones cost one timeout, not many) and reports all."""
    found = await asyncio.gather(*(_type_error_problem(call, what) for what, call in calls))
    problems = [problem for problem in found if problem]
    assert not problems, "invalid names must raise TypeError:\n" + "\n".join(problems)


# --- NAME-1 ---------------------------------------------------------------------------------

@requirement("NAME-1", needs=["backlog"])
async def test_valid_channel_names_work_in_send_and_receive(layer: Layer, asgi_target: LayerTarget) -> None:
    for name in await _valid_channel_names(layer, asgi_target):
        message = {"type": "test.name", "name": name}
        await layer.send(name, message)
        assert await expect_message(layer, name) == message, f"wrong message on {name!r}"


@requirement("NAME-1", needs=["groups", "backlog"])
async def test_valid_channel_names_can_join_a_group_and_get_its_messages(layer: Layer, asgi_target: LayerTarget) -> None:
    group = fresh_group()
    names = await _valid_channel_names(layer, asgi_target)
    for name in names:
        await layer.group_add(group, name)
    await layer.group_send(group, {"type": "test.name.group"})
    for name in names:
        assert (await expect_message(layer, name))["type"] == "test.name.group", f"wrong message on {name!r}"


# --- NAME-2 ---------------------------------------------------------------------------------

def _message() -> Message:
    return {"type": "test.invalid.name"}


def _calls(label: str, method: Any, names: Sequence[object], *rest: object) -> list[tuple[str, Callable[[], object]]]:
    """One lazily-made call of ``method`` per name, the name first (or after ``group``)."""
    return [(label.format(name=repr(name)), functools.partial(method, name, *rest)) for name in names]


def _channel_calls(label: str, method: Any, group: str, names: Sequence[object]) -> list[tuple[str, Callable[[], object]]]:
    return [(label.format(name=repr(name)), functools.partial(method, group, name)) for name in names]


@requirement("NAME-2")
async def test_send_to_an_invalid_channel_name_raises_type_error(layer: Layer) -> None:
    await _assert_all_raise_type_error(_calls("send({name})", layer.send, _invalid_channel_names(), _message()))


@requirement("NAME-2")
async def test_receive_on_an_invalid_channel_name_raises_type_error_at_once(layer: Layer) -> None:
    await _assert_all_raise_type_error(_calls("receive({name})", layer.receive, _invalid_channel_names()))


@requirement("NAME-2", needs=["groups"])
async def test_group_add_with_an_invalid_group_or_channel_name_raises_type_error(
        layer: Layer, asgi_target: LayerTarget) -> None:
    group, channel = fresh_group(), await any_channel(layer, asgi_target)
    await _assert_all_raise_type_error(
        _calls("group_add({name}, channel)", layer.group_add, _invalid_group_names(), channel)
        + _channel_calls("group_add(group, {name})", layer.group_add, group, _invalid_channel_names()))


@requirement("NAME-2", needs=["groups"])
async def test_group_discard_with_an_invalid_group_or_channel_name_raises_type_error(
        layer: Layer, asgi_target: LayerTarget) -> None:
    group, channel = fresh_group(), await any_channel(layer, asgi_target)
    await layer.group_add(group, channel)  # a real group, so the channel check cannot be skipped as a no-op
    await _assert_all_raise_type_error(
        _calls("group_discard({name}, channel)", layer.group_discard, _invalid_group_names(), channel)
        + _channel_calls("group_discard(group, {name})", layer.group_discard, group, _invalid_channel_names()))


@requirement("NAME-2", needs=["groups"])
async def test_group_send_to_an_invalid_group_name_raises_type_error(layer: Layer) -> None:
    await _assert_all_raise_type_error(
        _calls("group_send({name})", layer.group_send, _invalid_group_names(), _message()))


# --- NAME-3 ---------------------------------------------------------------------------------

def _group_names_with_bang() -> list[str]:
    token = secrets.token_hex(4)
    return [f"grp!{token}", f"grp-{token}!", f"!grp-{token}"]


@requirement("NAME-3", needs=["groups"])
async def test_group_names_containing_an_exclamation_mark_raise_type_error(layer: Layer, asgi_target: LayerTarget) -> None:
    channel = await any_channel(layer, asgi_target)
    names = _group_names_with_bang()
    calls = (_calls("group_add({name}, channel)", layer.group_add, names, channel)
             + _calls("group_discard({name}, channel)", layer.group_discard, names, channel)
             + _calls("group_send({name})", layer.group_send, names, _message()))
    await _assert_all_raise_type_error(calls)


@requirement("NAME-3", needs=["groups"])
async def test_valid_group_names_work_in_every_group_method(layer: Layer) -> None:
    token = secrets.token_hex(6)
    groups = [_single_letter(), f"asgi-test.AZaz09-_.{token}", _padded(f"asgi-test.long-{token}-", MAX_LENGTH)]
    for group in groups:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "test.group.name", "group": group})
        assert (await expect_message(layer, channel))["group"] == group, f"wrong message via group {group!r}"
        await layer.group_discard(group, channel)  # accepted; what it does is GRP-2's concern


# --- NAME-4 ---------------------------------------------------------------------------------

def _name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"new_channel() returned a {type(name).__name__}: {name!r}"
    if name.count("!") != 1:
        return f"{name!r} does not contain exactly one '!'"
    if len(name) > MAX_LENGTH or not VALID_PROCESS_SPECIFIC.match(name):
        return f"{name!r} is not a valid channel name"
    return None


@requirement("NAME-4")
async def test_new_channel_returns_valid_process_specific_names_that_never_repeat(layer: Layer) -> None:
    names = [await layer.new_channel() for _ in range(1000)]
    problems = [problem for problem in map(_name_problem, names) if problem]
    assert not problems, "\n".join(problems[:5])
    assert len(set(names)) == len(names), f"{len(names) - len(set(names))} of 1000 names repeated"
    for name in (names[0], names[-1]):
        await layer.send(name, {"type": "test.new.channel", "name": name})
        assert (await expect_message(layer, name))["name"] == name


@requirement("NAME-4")
async def test_new_channel_with_a_prefix_returns_a_name_starting_with_it(layer: Layer) -> None:
    name = await layer.new_channel("myprefix")
    assert _name_problem(name) is None, _name_problem(name)
    assert name.startswith("myprefix"), f"new_channel('myprefix') returned {name!r}"
    await layer.send(name, {"type": "test.prefixed"})
    assert (await expect_message(layer, name))["type"] == "test.prefixed"


@requirement("NAME-4")
async def test_new_channel_names_do_not_repeat_after_random_seed(layer: Layer) -> None:
    saved = random.getstate()
    try:
        random.seed(0)
        first = [await layer.new_channel() for _ in range(5)]
        random.seed(0)
        second = [await layer.new_channel() for _ in range(5)]
    finally:
        random.setstate(saved)
    repeated = set(first) & set(second)
    assert not repeated, f"after random.seed(0) again, new_channel() repeated {sorted(repeated)}"


# Run in a fresh interpreter: build the layer as Django Channels would, seed the random
# module the same way in every process, and print the names new_channel() gives.
NAMES_SCRIPT = """
import asyncio, importlib, inspect, json, random, sys
path, config, sys_path = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path[:0] = sys_path
module_name, _, attribute = path.rpartition(".")
factory = getattr(importlib.import_module(module_name), attribute)

async def main():
    random.seed(0)
    layer = factory(**config)
    random.seed(0)
    names = [await layer.new_channel() for _ in range(20)]
    close = getattr(layer, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result
    print(json.dumps(names))

asyncio.run(main())
"""


async def _names_from_fresh_process(dotted_path: str, config_json: str, timeout: float) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NAMES_SCRIPT, dotted_path, config_json, json.dumps(sys.path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=os.getcwd())
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"a process making new_channel() names did not finish within {timeout:g} s") from None
    assert process.returncode == 0, f"a process making new_channel() names failed:\n{err.decode()[-2000:]}"
    lines = out.decode().strip().splitlines()
    assert lines, f"a process making new_channel() names printed nothing:\n{err.decode()[-2000:]}"
    names: list[str] = json.loads(lines[-1])
    return names


@requirement("NAME-4")
async def test_new_channel_names_from_two_processes_seeded_alike_differ(asgi_target: LayerTarget) -> None:
    if asgi_target.dotted_path is None:
        pytest.skip("the layer comes from an asgi_layer_factory fixture: "
                    "no dotted path to build it in another process")
    try:
        config_json = json.dumps(asgi_target.config)
    except TypeError as exc:
        pytest.skip(f"the layer config cannot be passed to another process as JSON ({exc})")
    timeout = max(20.0, 4 * current_settings().delivery_timeout)
    first, second = await asyncio.gather(
        _names_from_fresh_process(asgi_target.dotted_path, config_json, timeout),
        _names_from_fresh_process(asgi_target.dotted_path, config_json, timeout))
    repeated = set(first) & set(second)
    assert not repeated, f"two processes seeded with random.seed(0) both got {sorted(repeated)[:3]}"
    assert len(set(first)) == len(first), f"one process got a name twice: {first}"
