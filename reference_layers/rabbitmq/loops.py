"""One session (AMQP connection, consumers, waiting receives) per event loop.

pika's AsyncioConnection is bound to the loop it was made on, and a channel layer is called
from several loops in turn (``asyncio.run`` twice, ``async_to_sync`` making a loop per call).
So each loop gets its own session, made on first use there. Just before a loop closes, its
session is closed on it (the AMQP close handshake needs the loop), so short-lived loops leave
no connection behind; queues live on the broker, so nothing a channel holds is lost.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Awaitable, Callable, Generic, TypeVar

State = TypeVar("State")
_HOOK = "_asgi_rabbitmq_layer_sessions"


class PerLoop(Generic[State]):
    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], State],
                 close: Callable[[State], Awaitable[None]]):
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

    def pop_all(self) -> list[tuple[asyncio.AbstractEventLoop, State]]:
        with self._lock:
            states, self._states = list(self._states.items()), {}
        return states

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None and not loop.is_running():
            try:
                loop.run_until_complete(self._close(state))
            except Exception:  # noqa: BLE001 - closing must never stop the loop from closing
                pass


def _close_before_loop_closes(loop: asyncio.AbstractEventLoop, owner: PerLoop) -> None:
    owners = getattr(loop, _HOOK, None)
    if owners is None:
        owners = weakref.WeakSet()
        original_close = loop.close

        def close():
            for each in list(owners):
                each._release(loop)
            original_close()

        try:
            loop.close = close
            setattr(loop, _HOOK, owners)
        except AttributeError:  # cannot patch this loop type: its state is dropped lazily
            return
    owners.add(owner)
