"""What a suite test needs to say which requirement it checks, and to run as a coroutine.

Suite tests are ``async def`` functions decorated with :func:`requirement`. The decorator
tags them for the report and runs them on a fresh event loop with a time limit, so the
suite works whatever asyncio plugin (or none) the user's pytest has, and a layer that hangs
becomes a clear failure instead of a stuck CI job.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import secrets
from dataclasses import dataclass

import pytest

from . import requirements


@dataclass
class Settings:
    """Run-wide knobs, set once by the plugin from its command-line options."""

    timeout: float = 30.0  # per test, seconds
    quiet_period: float = 0.25  # how long "nothing arrives" is watched for
    delivery_timeout: float = 5.0  # how long a message may take to arrive
    strict: bool = False


SETTINGS = Settings()

# Features a layer may declare it does not offer (option --asgi-unsupported, or the class
# attribute ``conformance_unsupported = {feature: reason}``). "groups" and "flush" come
# from the layer's own ``extensions`` list instead.
DECLARABLE_FEATURES = {
    "cross-process": "messages cross process boundaries (XP-*)",
    "normal-channels": "channels without '!' shared by several receivers",
    "backlog": ("messages sent to a channel before any receive began on it are kept for it; "
                "a layer's own new_channel() names count as received on from their creation "
                "(a pub/sub layer subscribes them then), so only other names need this"),
    "capacity": "per-channel capacity and ChannelFull",
    "expiry": "message expiry",
    "group-expiry": "group membership expiry",
}
EXTENSION_FEATURES = ("groups", "flush")


def requirement(requirement_id: str, *, needs: tuple[str, ...] | list[str] = ()):
    """Tag a suite test with the requirement id it checks and the features it needs.

    An ``async def`` test is wrapped to run on its own event loop under SETTINGS.timeout;
    every :class:`LayerPool` among its arguments is closed inside that same loop.
    """
    requirements.get(requirement_id)  # fail at import on a typo, not at report time
    for feature in needs:
        if feature not in DECLARABLE_FEATURES and feature not in EXTENSION_FEATURES:
            raise ValueError(f"unknown feature {feature!r} in requirement({requirement_id!r})")

    def decorate(test):
        runner = _async_runner(test) if inspect.iscoroutinefunction(test) else _sync_runner(test)
        return pytest.mark.asgi_requirement(requirement_id, needs=tuple(needs))(runner)

    return decorate


def _async_runner(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(_run_with_cleanup(test, args, kwargs))

    return run


def _sync_runner(test):
    """A sync test (async_to_sync, several loops) gets its ``layer`` built in a loop of its own."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        for name, value in kwargs.items():
            if isinstance(value, LayerToBuild):
                kwargs[name] = asyncio.run(_build(value))
        return test(*args, **kwargs)

    return run


async def _build(placeholder: "LayerToBuild"):
    return placeholder.pool.make()


async def _run_with_cleanup(test, args, kwargs):
    # Layers are built inside the test's own loop, as Django Channels builds them (some layers
    # refuse to be built without a running loop).
    pools = [value for value in kwargs.values() if isinstance(value, LayerPool)]
    pools += [value.pool for value in kwargs.values() if isinstance(value, LayerToBuild)]
    kwargs = {name: (value.pool.make() if isinstance(value, LayerToBuild) else value)
              for name, value in kwargs.items()}
    try:
        try:
            await asyncio.wait_for(test(*args, **kwargs), SETTINGS.timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"test did not finish within {SETTINGS.timeout:g} s: the layer hung "
                "(raise --asgi-timeout if it is just slow)"
            ) from None
    finally:
        for pool in pools:
            await pool.aclose()


class LayerToBuild:
    """What the ``layer`` fixture hands a suite test: built by the test's runner, in its loop."""

    def __init__(self, pool: "LayerPool"):
        self.pool = pool


class LayerPool:
    """Makes layer instances for one test and releases them when the test ends.

    ``make(**overrides)`` builds a layer as Django Channels would (``BACKEND(**CONFIG)``),
    with the test's own ``capacity``/``expiry``/... merged into the configured ones.
    """

    def __init__(self, factory):
        self._factory = factory
        self._made: list = []
        self.closed = False

    def make(self, **overrides):
        try:
            layer = self._factory(**overrides)
        except TypeError as exc:
            if overrides and "unexpected keyword" in str(exc):
                raise AssertionError(
                    f"the layer refused the settings this test configures, {overrides!r}: {exc}. The suite "
                    "uses the keyword names of Django Channels' own layers; declare "
                    "--asgi-unsupported=FEATURE=REASON for a feature that cannot be configured so") from None
            raise
        self._made.append(layer)
        return layer

    async def aclose(self):
        if self.closed:
            return
        self.closed = True
        for layer in self._made:
            await _release(layer)
        self._made.clear()


async def _release(layer):
    """Flush and close a layer, tolerating a layer that is already broken (the test said so)."""
    if "flush" in (layer_attribute(layer, "extensions") or []):
        try:
            await asyncio.wait_for(layer.flush(), SETTINGS.delivery_timeout)
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's own verdict
            pass
    await close_quietly(layer, SETTINGS.delivery_timeout)


def layer_attribute(layer, name: str):
    """``getattr`` that treats any error as absent (some layers' __getattr__ needs a loop or more)."""
    try:
        return getattr(layer, name, None)
    except Exception:  # noqa: BLE001
        return None


async def close_quietly(layer, timeout: float) -> None:
    """Call the layer's ``close()`` (or channels_redis' ``close_pools()``), ignoring its errors."""
    for closer in ("close", "close_pools"):
        method = layer_attribute(layer, closer)
        if callable(method):
            try:
                result = method()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, timeout)
            except Exception:  # noqa: BLE001 - cleanup must not mask the test's own verdict
                pass
            return


# --- names -----------------------------------------------------------------------------

def fresh_channel(stem: str = "chan") -> str:
    """A normal channel name no other test (or run against the same server) uses."""
    return f"asgi-test.{stem}-{secrets.token_hex(6)}"


def fresh_group(stem: str = "grp") -> str:
    return f"asgi-test.{stem}-{secrets.token_hex(6)}"


def offers(target, *features: str) -> bool:
    """True if the layer offers every one of ``features`` (declared or extension)."""
    return all(target.missing(feature) is None for feature in features)


def require(target, *features: str) -> None:
    """Skip the running test, with the layer's own reason, unless it offers every feature.

    For a parametrized case that needs more than its siblings (``[normal]`` of a test that
    also runs on process-specific channels): a SKIP with the reason, never a silent pass.
    """
    for feature in features:
        reason = target.missing(feature)
        if reason:
            pytest.skip(reason)


async def any_channel(layer, target, stem: str = "chan") -> str:
    """A fresh channel for a test about something else, on any layer.

    A normal channel where the layer offers normal channels with a backlog, else one of the
    layer's own ``new_channel()`` names (which have a backlog by definition). Channels from
    one layer's new_channel() share one capacity (CAP-4): a test needing two channels with
    independent capacities must not take both from here.
    """
    if offers(target, "normal-channels", "backlog"):
        return fresh_channel(stem)
    return await layer.new_channel()


def non_local_part(name) -> str:
    """The part of a new_channel() name up to and including its '!' (shared by ``p!*``).

    A name without '!' is a NAME-4 violation: fail with that, not with a bare ValueError.
    """
    if not isinstance(name, str) or "!" not in name:
        raise AssertionError(f"new_channel() returned {name!r}, which has no '!': it must be a "
                             "process-specific channel name (NAME-4)")
    return name[: name.index("!") + 1]


# --- waiting for messages ----------------------------------------------------------------

async def expect_message(layer, channel: str, timeout: float | None = None) -> dict:
    """The next message on ``channel``; fails clearly if none arrives in time."""
    timeout = SETTINGS.delivery_timeout if timeout is None else timeout
    try:
        return await asyncio.wait_for(layer.receive(channel), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no message arrived on {channel!r} within {timeout:g} s") from None


async def expect_silence(layer, channel: str, period: float | None = None) -> None:
    """Fails if a message arrives on ``channel`` within the quiet period."""
    period = SETTINGS.quiet_period if period is None else period
    try:
        message = await asyncio.wait_for(layer.receive(channel), period)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"expected nothing on {channel!r}, got {message!r}")


def channel_full_class_of(exc: BaseException) -> bool:
    """True if ``exc`` is a ChannelFull, by class name along its MRO (the spec names no module)."""
    return any(cls.__name__ == "ChannelFull" for cls in type(exc).__mro__)


# Messages larger than this are not built in a test: a layer declaring a bigger limit is skipped.
LARGEST_LIMIT_TESTED = 256 * 1024 * 1024


def declared_size_limit(target) -> tuple[int, type]:
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
