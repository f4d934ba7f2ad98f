"""One request waiting for its reply: a thread reads replies, sync and async callers wait."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from .frames import Reply


class Pending:
    """Awaitable from a thread (``done.wait``) or an event loop (``future()``)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Reply | None = None  # None once done means the peer died
        self._wakers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def finish(self, reply: Reply | None) -> None:
        with self._lock:
            self.reply = reply
            self.done.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def future(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # that loop has ended: nobody waits any more
                pass

        with self._lock:
            if self.done.is_set():
                future.set_result(None)
            else:
                self._wakers.append(wake)
        return future
