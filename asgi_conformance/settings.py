"""The run-wide knobs (time limits, quiet period, strictness) as the running test sees them.

The plugin builds one :class:`Settings` from its command-line options and keeps it on the
pytest config; around each test it puts that value in force (:func:`in_force`), and the
suite's helpers read it with :func:`current_settings`. A context variable, not a module
global: a pytest run inside another (pytester) puts its own settings in force and the outer
run's come back by themselves when it ends. Outside a run the defaults apply.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Settings:
    timeout: float = 30.0  # per test, seconds
    quiet_period: float = 0.25  # how long "nothing arrives" is watched for
    delivery_timeout: float = 5.0  # how long a message may take to arrive
    strict: bool = False  # SHOULD misses are failures, not deviations
    fault_timeout: float = 30.0  # how long one layer call may take while (or after) a server fault


DEFAULTS = Settings()

_in_force: ContextVar[Settings] = ContextVar("asgi_conformance_settings", default=DEFAULTS)


def current_settings() -> Settings:
    """The settings of the test that is running (the defaults outside a suite run)."""
    return _in_force.get()


@contextlib.contextmanager
def in_force(settings: Settings) -> Iterator[None]:
    """Make ``settings`` what :func:`current_settings` returns, in this context, until the block ends.

    Event loops started inside the block (``asyncio.run``, ``async_to_sync``) copy the context,
    so a test's tasks see the same settings.
    """
    token = _in_force.set(settings)
    try:
        yield
    finally:
        _in_force.reset(token)
