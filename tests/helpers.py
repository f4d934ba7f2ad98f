"""Small helpers our own tests shared by copy: one definition each, so a bound changes in one place.

The time bounds here say "this did not hang", never "this was fast": the machines these tests
run on are shared, and a test that fails on a slow minute proves nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

GENEROUS = 40.0  # seconds: one layer call or one delivery, on a loaded machine
CALL_LIMIT = 15.0  # seconds: one call to a local server, which answers in milliseconds when healthy
RUN_LIMIT = 4 * GENEROUS  # seconds: a whole scenario, server restarts included
POLL_INTERVAL = 0.01  # seconds between two looks at a condition no event announces


def run(coroutine: Coroutine[Any, Any, T], timeout: float = RUN_LIMIT) -> T:
    """Runs a test's scenario on a fresh event loop; a hang ends as a TimeoutError after ``timeout``."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def fresh(stem: str = "chan") -> str:
    """A channel or group name no other test (or earlier run on the same server) uses."""
    return f"test.{stem}-{secrets.token_hex(5)}"


async def eventually(condition: Callable[[], bool], timeout: float = GENEROUS, what: str = "") -> None:
    """Waits until ``condition()`` holds, for state that changes with no event to await
    (another process's work, a server's bookkeeping); fails naming ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or condition}")
        await asyncio.sleep(POLL_INTERVAL)


async def closing(layer, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine``, then flush and close ``layer`` whatever happened (tests leave no keys or queues)."""
    try:
        return await coroutine
    finally:
        await layer.flush()
        await layer.close()
