"""How a suite test runs: tagged with its requirement, on a fresh event loop, under a time limit.

Suite tests are ``async def`` functions decorated with :func:`requirement`. The decorator
tags them for the report and runs them on a loop of their own, so the suite works whatever
asyncio plugin (or none) the user's pytest has, and a layer that hangs becomes a clear
failure instead of a stuck CI job. The layers a test builds come from a :class:`LayerPool`
and are flushed and closed inside the test's own loop when it ends.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, TypeVar

import pytest

from . import requirements
from .bounded import CANCEL_GRACE, BoundExceeded, Ending, run_on_own_loop, within
from .features import is_known
from .layer_access import close_quietly, layer_attribute
from .settings import current_settings

MARKER = "asgi_requirement"
FAULT_TEST_EXTRA_TIMEOUTS = 4  # fault timeouts a FAULT test gets beyond the run's time limit

Test = TypeVar("Test", bound=Callable[..., Any])


def requirement(requirement_id: str, *, needs: Iterable[str] = ()) -> Callable[[Test], Test]:
    """Tag a suite test with the requirement id it checks and the features every case of it needs.

    An ``async def`` test is wrapped to run on its own event loop under the run's time limit;
    every :class:`LayerPool` among its arguments is closed inside that same loop.
    """
    requirements.get(requirement_id)  # fail at import on a typo, not at report time
    needed = tuple(needs)
    for feature in needed:
        if not is_known(feature):
            raise ValueError(f"unknown feature {feature!r} in requirement({requirement_id!r})")

    def decorate(test: Test) -> Test:
        faulty = requirements.get(requirement_id).area == "FAULT"
        run = _async_runner(test, faulty) if inspect.iscoroutinefunction(test) else _sync_runner(test)
        marked: Test = getattr(pytest.mark, MARKER)(requirement_id, needs=needed)(run)
        return marked

    return decorate


def _async_runner(test: Callable[..., Any], faulty: bool = False) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        run_on_own_loop(lambda: _run_with_cleanup(test, args, kwargs, _time_limit(faulty)))

    return run


def _sync_runner(test: Callable[..., Any]) -> Callable[..., Any]:
    """A sync test (async_to_sync, several loops) gets its ``layer`` built in a loop of its own."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if isinstance(value, LayerToBuild):
                kwargs[name] = run_on_own_loop(lambda: _build(value))
        return test(*args, **kwargs)

    return run


async def _build(placeholder: LayerToBuild) -> Any:
    return placeholder.pool.make()


def _time_limit(faulty: bool) -> float:
    """A test's time limit: a FAULT test's calls may each take the fault timeout, and restarts take
    their own time, so it gets several of those on top (its calls fail first, saying where)."""
    settings = current_settings()
    return settings.timeout + (FAULT_TEST_EXTRA_TIMEOUTS * settings.fault_timeout if faulty else 0.0)


async def _run_with_cleanup(test: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                            timeout: float) -> None:
    # Layers are built inside the test's own loop, as Django Channels builds them (some layers
    # refuse to be built without a running loop).
    pools = [value for value in kwargs.values() if isinstance(value, LayerPool)]
    pools += [value.pool for value in kwargs.values() if isinstance(value, LayerToBuild)]
    kwargs = {name: (value.pool.make() if isinstance(value, LayerToBuild) else value)
              for name, value in kwargs.items()}
    try:
        try:
            await within(test(*args, **kwargs), timeout)
        except BoundExceeded as exc:
            if exc.ending is Ending.IGNORED_CANCELLATION:
                raise AssertionError(
                    f"test did not finish within {timeout:g} s, and then ignored its cancellation for "
                    f"{CANCEL_GRACE:g} s: a layer call went on waiting after it was cancelled (left behind)"
                ) from None
            raise AssertionError(
                f"test did not finish within {timeout:g} s: the layer hung "
                "(raise --asgi-timeout if it is just slow)"
            ) from None
    finally:
        for pool in pools:
            await pool.aclose()


class LayerToBuild:
    """What the ``layer`` fixture hands a suite test: built by the test's runner, in its loop."""

    def __init__(self, pool: LayerPool):
        self.pool = pool


class LayerPool:
    """Makes layer instances for one test and releases them when the test ends.

    ``make(**overrides)`` builds a layer as Django Channels would (``BACKEND(**CONFIG)``),
    with the test's own ``capacity``/``expiry``/... merged into the configured ones.
    """

    def __init__(self, factory: Callable[..., Any]):
        self._factory = factory
        self._made: list[Any] = []
        self.closed = False

    def make(self, **overrides: Any) -> Any:
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

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for layer in self._made:
            await _release(layer)
        self._made.clear()


async def _release(layer: Any) -> None:
    """Flush and close a layer, tolerating a layer that is already broken (the test said so)."""
    delivery_timeout = current_settings().delivery_timeout
    if "flush" in (layer_attribute(layer, "extensions") or []):
        try:
            await within(layer.flush(), delivery_timeout)
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's own verdict
            pass
    await close_quietly(layer, delivery_timeout)
