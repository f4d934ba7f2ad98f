"""State per event loop (connections, tasks), closed on its own loop just before that loop closes.

A layer object is called from several loops in turn (``asyncio.run`` twice, ``async_to_sync``
making a loop per call), while a connection belongs to the loop that opened it.

Every call of every layer asks which loop runs it, and on Python 3.11 and older
``asyncio.get_running_loop()`` makes a getpid() system call each time (its check against a
loop inherited by a forked child): about 0.2 µs, a fifth of a late fan-out member's receive.
So the state found last is kept with its loop and thread, and used again while that loop
is the one running in this thread, which a plain loop says in its ``_thread_id``; a fork
forgets it (``os.register_at_fork``), as the child runs loops of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

State = TypeVar("State")
_LOOP_HOOK = "_asgi_reference_layer_owners"
_this_thread = threading.get_ident
_forks = 0  # forks this process came from since import: a state found before one is not reused


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


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
        # (loop, state, forks) of the last call: reused while that loop runs in the calling thread
        self._last: tuple[Any, State, int] | None = None

    def current(self) -> State:
        last = self._last
        if last is not None and last[0]._thread_id == _this_thread() and last[2] == _forks:  # noqa: SLF001
            return last[1]
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._first_use(loop)
        if getattr(loop, "_thread_id", None) == _this_thread():  # a loop type that says where it runs
            self._last = (loop, state, _forks)
        return state

    def _first_use(self, loop: asyncio.AbstractEventLoop) -> State:
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
            self._last = None
            return self._states.pop(loop, None)

    def pop_all(self) -> list[tuple[asyncio.AbstractEventLoop, State]]:
        with self._lock:
            self._last = None
            states, self._states = list(self._states.items()), {}
        return states

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called just before ``loop`` closes: close this loop's state on it while we still can."""
        with self._lock:
            self._last = None
            state = self._states.pop(loop, None)
        if state is not None and not loop.is_running():
            try:
                loop.run_until_complete(self._close(state))
            except Exception:  # noqa: BLE001 - closing must never stop the loop from closing
                pass


def closes_states_first(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a PerLoop's states on ``loop`` are closed before it closes (its type could be
    patched, and a state was made there): else they are dropped only once it is closed."""
    return getattr(loop, _LOOP_HOOK, None) is not None


def loop_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time``, or ``time.monotonic`` itself where that is all it does (asyncio's own
    loops): a Python call less for what reads the clock once per member and copy."""
    if getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time


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
