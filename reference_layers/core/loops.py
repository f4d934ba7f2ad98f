"""State per event loop (connections, tasks), closed on its own loop just before that loop closes.

A layer object is called from several loops in turn (``asyncio.run`` twice, ``async_to_sync``
making a loop per call), while a connection belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

State = TypeVar("State")
_LOOP_HOOK = "_asgi_reference_layer_owners"


class PerLoop(Generic[State]):
    """One state (connections, tasks) per event loop, made on first use there.

    Connections belong to the loop that opened them, while a layer is called from several
    loops in turn (``asyncio.run`` twice, ``async_to_sync`` making a loop per call). Just
    before a loop closes, its state is closed on it (a close handshake needs the loop), so
    short-lived loops leave no socket behind.
    """

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], State],
                 close: Callable[[State], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        self._states: dict[asyncio.AbstractEventLoop, State] = {}
        self._lock = threading.Lock()

    def current(self) -> State:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is not None:
            return state
        with self._lock:
            for old in [old for old in self._states if old.is_closed()]:
                del self._states[old]  # closed without our hook (a loop type we cannot patch)
            state = self._states[loop] = self._make(loop)
        _close_before_loop_closes(loop, self)
        return state

    def existing(self) -> State | None:
        """This loop's state if it has one (without making one)."""
        return self._states.get(asyncio.get_running_loop())

    def pop_current(self) -> State | None:
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._states.pop(loop, None)

    def pop_all(self) -> list[tuple[asyncio.AbstractEventLoop, State]]:
        with self._lock:
            states, self._states = list(self._states.items()), {}
        return states

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called just before ``loop`` closes: close this loop's state on it while we still can."""
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None and not loop.is_running():
            try:
                loop.run_until_complete(self._close(state))
            except Exception:  # noqa: BLE001 - closing must never stop the loop from closing
                pass


def _close_before_loop_closes(loop: asyncio.AbstractEventLoop, owner: PerLoop[Any]) -> None:
    owners: weakref.WeakSet[PerLoop[Any]] | None = getattr(loop, _LOOP_HOOK, None)
    if owners is None:
        owners = weakref.WeakSet()
        original_close = loop.close

        def close() -> None:
            for each in list(owners):
                each._release(loop)  # noqa: SLF001 - PerLoop releasing its own kind
            original_close()

        try:
            loop.close = close  # type: ignore[method-assign]  # the hook: run ours, then the loop's own
            setattr(loop, _LOOP_HOOK, owners)
        except AttributeError:  # cannot patch this loop type: its state is dropped lazily
            return
    owners.add(owner)
