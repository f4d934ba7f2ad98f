"""The words suite tests are written in: fresh names, features, waiting for messages, receives as tasks.

Every wait is bounded by the run's settings (:func:`current_settings`), so a broken layer
fails clearly instead of hanging, and a slow one is never failed for speed.

Which features a test needs, said one way per case:

- ``@requirement(ID, needs=[...])``: every case of the test is about the feature (a FLUSH test
  needs ``flush``). The whole test is skipped, with the layer's reason, before it builds anything.
- ``require(target, ...)``: only some cases need it, known only inside the test (the
  ``[normal]`` case of a test that also runs on process-specific channels, or the fallback a
  test reaches when the first way is closed). That case is skipped with the layer's reason:
  a SKIP, never a silent pass.
- ``offers(target, ...)``: the feature widens what the test covers (another kind of channel,
  group steps on top) but the test checks its requirement without it too. The test runs
  either way and covers more where the layer offers more.

Never ``target.missing(...)`` for these decisions in a test: it is what the three above read.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Iterable

import pytest

from .model import non_local_part
from .settings import Settings, current_settings
from .target import LayerTarget

__all__ = [
    "LARGEST_LIMIT_TESTED", "Layer", "LayerTarget", "Message", "Settings",
    "any_channel", "cancel_all", "channel_of_kind", "current_settings", "declared_size_limit", "expect_message",
    "expect_silence", "first_finished", "fresh_channel", "fresh_group", "indexes",
    "is_channel_full", "now_waiting", "numbered_message", "offers", "outcome_of_cancelled",
    "process_prefix_of", "require", "results_of", "start_receives", "still_waiting", "yield_steps",
]

Layer = Any
"""A layer under test: anyone's code, judged by what it does, so the suite assumes no type."""

Message = dict[str, Any]


# --- names -----------------------------------------------------------------------------

def fresh_channel(stem: str = "chan") -> str:
    """A normal channel name no other test (or run against the same server) uses."""
    return f"asgi-test.{stem}-{secrets.token_hex(6)}"


def fresh_group(stem: str = "grp") -> str:
    return f"asgi-test.{stem}-{secrets.token_hex(6)}"


def process_prefix_of(new_channel_name: object) -> str:
    """The non-local part (up to and including '!') of a name new_channel() returned.

    Such a name must have a '!' (NAME-4): one without fails the test with that, not with a
    bare ValueError somewhere later.
    """
    if not isinstance(new_channel_name, str) or "!" not in new_channel_name:
        raise AssertionError(f"new_channel() returned {new_channel_name!r}, which has no '!': it must be a "
                             "process-specific channel name (NAME-4)")
    return non_local_part(new_channel_name)


async def any_channel(layer: Layer, target: LayerTarget, stem: str = "chan") -> str:
    """A fresh channel for a test about something else, on any layer.

    A normal channel where the layer offers normal channels with a backlog, else one of the
    layer's own ``new_channel()`` names (which have a backlog by definition). Channels from
    one layer's new_channel() share one capacity (CAP-4): a test needing two channels with
    independent capacities must not take both from here.
    """
    if offers(target, "normal-channels", "backlog"):
        return fresh_channel(stem)
    name: str = await layer.new_channel()
    return name


async def channel_of_kind(layer: Layer, target: LayerTarget, kind: str, *needs: str) -> str:
    """For a test parametrised over ``kind`` ("process-specific" or "normal"): a new_channel()
    name, or a fresh normal channel. The normal case is about normal channels, so it is skipped
    (with the layer's reason) where they, or ``needs``, are missing."""
    if kind == "process-specific":
        channel: str = await layer.new_channel()
        return channel
    require(target, "normal-channels", *needs)
    return fresh_channel()


# --- features (see the module's docstring for which of these to use) ---------------------

def offers(target: LayerTarget, *features: str) -> bool:
    """True if the layer offers every one of ``features`` (declared or extension)."""
    return all(target.missing(feature) is None for feature in features)


def require(target: LayerTarget, *features: str) -> None:
    """Skip the running case, with the layer's own reason, unless it offers every feature."""
    for feature in features:
        reason = target.missing(feature)
        if reason:
            pytest.skip(reason)


# --- messages --------------------------------------------------------------------------

def numbered_message(index: int, tag: str = "chan") -> Message:
    """Message number ``index`` of a sequence, so order and losses can be read back."""
    return {"type": f"test.{tag}", "index": index}


def indexes(messages: Iterable[Message]) -> list[int]:
    """The numbers of :func:`numbered_message` messages, in the order given."""
    return [message["index"] for message in messages]


async def expect_message(layer: Layer, channel: str, timeout: float | None = None) -> Message:
    """The next message on ``channel``; fails clearly if none arrives in time."""
    timeout = current_settings().delivery_timeout if timeout is None else timeout
    try:
        message: Message = await asyncio.wait_for(layer.receive(channel), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no message arrived on {channel!r} within {timeout:g} s") from None
    return message


async def expect_silence(layer: Layer, channel: str, period: float | None = None) -> None:
    """Fails if a message arrives on ``channel`` within the quiet period."""
    period = current_settings().quiet_period if period is None else period
    try:
        message = await asyncio.wait_for(layer.receive(channel), period)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"expected nothing on {channel!r}, got {message!r}")


# --- receives as tasks -----------------------------------------------------------------

def start_receives(layer: Layer, channel: str, count: int) -> list[asyncio.Task[Any]]:
    """``count`` receives on ``channel``, running as tasks."""
    return [asyncio.ensure_future(layer.receive(channel)) for _ in range(count)]


async def still_waiting(*tasks: asyncio.Task[Any], period: float | None = None) -> None:
    """Watch receives for the quiet period: none may end, since nothing was sent to them."""
    period = current_settings().quiet_period if period is None else period
    done, _ = await asyncio.wait(set(tasks), timeout=period)
    for task in done:
        if task.cancelled():
            raise AssertionError("a waiting receive was cancelled by the layer")
        error = task.exception()
        if error is not None:
            raise AssertionError(f"a waiting receive failed: {error!r}") from error
        raise AssertionError(f"a receive returned {task.result()!r} although nothing was sent to it")


async def now_waiting(*tasks: asyncio.Task[Any]) -> None:
    """Let receives reach the layer and start waiting (a short watch: none may end)."""
    await still_waiting(*tasks, period=current_settings().quiet_period / 5)


async def results_of(tasks: list[asyncio.Task[Any]], what: str) -> list[Any]:
    """Results of ``tasks``, which must all finish within the delivery timeout."""
    if not tasks:
        return []
    timeout = current_settings().delivery_timeout
    _, pending = await asyncio.wait(set(tasks), timeout=timeout)
    if pending:
        raise AssertionError(f"{len(pending)} of {len(tasks)} {what} got no message within {timeout:g} s")
    return [task.result() for task in tasks]


async def first_finished(tasks: list[asyncio.Task[Any]], count: int) -> list[asyncio.Task[Any]]:
    """Wait until ``count`` of ``tasks`` have finished; fails if they do not in time."""
    loop = asyncio.get_running_loop()
    timeout = current_settings().delivery_timeout
    deadline = loop.time() + timeout
    done: set[asyncio.Task[Any]] = set()
    while len(done) < count:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"only {len(done)} of {count} messages reached the waiting receives "
                                 f"within {timeout:g} s")
        await asyncio.wait(set(tasks), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        done = {task for task in tasks if task.done()}
    return [task for task in tasks if task.done()]


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait (bounded) until each has ended."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), current_settings().delivery_timeout)


async def outcome_of_cancelled(task: asyncio.Task[Any]) -> Any:
    """What a receive that was cancelled ended with: its message, or None if the cancel won."""
    try:
        return await asyncio.wait_for(task, current_settings().delivery_timeout)
    except asyncio.CancelledError:
        return None


async def yield_steps(times: int) -> None:
    """Let other tasks run ``times`` steps of the event loop (a yield, not a wait)."""
    for _ in range(times):
        await asyncio.sleep(0)


# --- errors the spec names by class name -------------------------------------------------

def is_channel_full(exc: BaseException) -> bool:
    """True if ``exc`` is a ChannelFull, by class name along its MRO (the spec names no module)."""
    return any(cls.__name__ == "ChannelFull" for cls in type(exc).__mro__)


# Messages larger than this are not built in a test: a layer declaring a bigger limit is skipped.
LARGEST_LIMIT_TESTED = 256 * 1024 * 1024


def declared_size_limit(target: LayerTarget) -> tuple[int, type[BaseException]]:
    """The layer's ``message_size_limit`` and the ``MessageTooLarge`` its module exports.

    Skips the test when the layer declares no limit; fails it when the layer declares one but
    exports no exception class for it (MSG-5, GRP-5).
    """
    limit = target.message_size_limit
    if limit is None:
        pytest.skip("the layer declares no size limit (no `message_size_limit` attribute, in bytes "
                    "of the encoded message)")
    if limit > LARGEST_LIMIT_TESTED:
        pytest.skip(f"message_size_limit={limit} bytes is too large to build a message over it in a test")
    too_large = getattr(target.module, "MessageTooLarge", None)
    assert isinstance(too_large, type) and issubclass(too_large, BaseException), (
        f"the layer declares message_size_limit={limit!r} but its module "
        f"{getattr(target.module, '__name__', target.module)!r} exports no MessageTooLarge exception class")
    return int(limit), too_large
