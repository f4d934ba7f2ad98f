"""Per-event-loop state: redis-py connections and tasks belong to the loop that made them.

A layer used from ``asyncio.run`` twice, or through ``async_to_sync`` (a new loop per call in
another thread), gets fresh connections on each loop. When a loop closes, the connections the
layer opened on it are closed first, so short-lived loops leave no sockets behind.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Callable, Generic, TypeVar

State = TypeVar("State")


class PerLoop(Generic[State]):
    def __init__(self, make: Callable[[], State], close: Callable[[State], "asyncio.Future"]):
        self._make = make
        self._close = close
        self._states: dict[asyncio.AbstractEventLoop, State] = {}
        self._lock = threading.Lock()

    def current(self) -> State:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                for old in [old for old in self._states if old.is_closed()]:
                    del self._states[old]  # closed without our hook (e.g. uvloop): just forget
                state = self._states[loop] = self._make()
                _close_before_loop_closes(loop, self)
        return state

    def pop_current(self) -> State | None:
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._states.pop(loop, None)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called just before ``loop`` closes: close this loop's state on it while we still can."""
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None and not loop.is_running():
            try:
                loop.run_until_complete(self._close(state))
            except Exception:  # noqa: BLE001 - closing must never stop the loop from closing
                pass


def _close_before_loop_closes(loop: asyncio.AbstractEventLoop, owner: PerLoop) -> None:
    owners = getattr(loop, "_asgi_redis_layer_owners", None)
    if owners is None:
        owners = weakref.WeakSet()
        original_close = loop.close

        def close():
            for each in list(owners):
                each._release(loop)
            original_close()

        try:
            loop.close = close
            loop._asgi_redis_layer_owners = owners
        except AttributeError:  # a loop type without instance attributes: states are dropped lazily
            return
    owners.add(owner)
