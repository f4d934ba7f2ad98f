"""How the peer answers: one reply frame per request, its result or the error it raised."""

from __future__ import annotations

import pickle
import threading
from typing import IO, Any

from .frames import RemoteError, Reply, write_frame


class ReplyWriter:
    """Writes reply frames; commands finish on the loop, but a lock keeps frames whole anyway."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._lock = threading.Lock()

    def result(self, request_id: int, result: Any) -> None:
        reply = Reply(request_id, result=result)
        try:
            pickle.dumps(reply)
        except Exception as exc:  # noqa: BLE001 - any unpicklable result is the command's error
            self.error(request_id, TypeError(f"the command's result cannot be sent back: {exc!r}"))
            return
        self._write(reply)

    def error(self, request_id: int, error: BaseException) -> None:
        self._write(Reply(request_id, error=RemoteError.of(error)))

    def _write(self, reply: Reply) -> None:
        with self._lock:
            try:
                write_frame(self._stream, reply)
            except (BrokenPipeError, ValueError):  # parent gone: nothing left to tell
                pass
