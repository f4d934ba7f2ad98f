"""SIGTERM and SIGHUP end the process with our servers stopped first.

By default these signals kill a Python process outright: no atexit hook runs, so the servers
a run started (in their own sessions, out of reach of a signal sent to our process group)
would be orphaned by ``timeout``, a cancelled CI job or a closed terminal. Raising SystemExit
from a handler is not enough: pytest takes it for the running test's failure and goes on with
the next. So the handler runs the cleanup itself, then lets the signal end the process the
default way, as it would have without us: the exit status says the same.

Only a signal left at its default is taken over: an ignored one (``nohup``) stays ignored, and
a handler some other code installed keeps deciding what the signal means.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def cleanup_before_termination(cleanup: Callable[[], None]) -> None:
    """Have ``cleanup`` run before a SIGTERM or SIGHUP ends the process.

    Cheap to call again: a signal already taken over is no longer at its default. Python lets
    only the main thread set handlers; from another thread nothing is done, and the next call
    from the main thread installs them.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in TERMINATING:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _ending_after(cleanup))


def _ending_after(cleanup: Callable[[], None]) -> Callable[[int, FrameType | None], None]:
    def end(signum: int, frame: FrameType | None) -> None:
        try:
            cleanup()
        finally:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # delivered at once: the process ends by this signal

    return end
