"""An event loop in a thread of its own that a test can hold still: what a loop that is busy
(or blocked) elsewhere leaves unread in its sockets, a test can then order exactly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from tests.helpers import GENEROUS


class LoopThread:
    """An event loop running in a thread of its own, which a test can hold still."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return await asyncio.wrap_future(self.submit(coroutine))

    def hold(self) -> threading.Event:
        """Block the loop's thread (in a callback) until the returned event is set."""
        release = threading.Event()
        self.loop.call_soon_threadsafe(release.wait, GENEROUS)
        return release

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(GENEROUS)
        self.loop.close()

