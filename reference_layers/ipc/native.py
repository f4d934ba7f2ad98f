"""The optional C hot path (``_hotcore.c``): loaded if it was built and agrees with the layout.

Why optional: the layer must work wherever posix_ipc does, compiler or not; the C steps only
make the commonest send and receive cheaper, the pure-Python hot path does the same work.
``ASGI_IPC_PURE_PYTHON=1`` turns it off (the tests run the crash tests both ways).
"""

from __future__ import annotations

import os

from . import layout as L
from .journal import _PAUSE_AT

try:
    from . import _hotcore
except ImportError:  # not built: no compiler, or a source checkout that was never installed
    _hotcore = None


def _agrees(module) -> bool:
    """Every layout number the C code was compiled with is layout.py's."""
    return all(getattr(L, name) == value for name, value in module.LAYOUT.items())


NOT_HANDLED = object()  # the C steps' "take the Python path" (hotpath.NOT_HANDLED is this object)
BUSY = object()  # locked_*: the lock is taken by someone else; nothing was done, the lock is not ours
HELD = object()  # locked_*: the lock is ours and still held; the Python side repairs if needed, goes on
AVAILABLE = _hotcore is not None and _agrees(_hotcore) and os.environ.get("ASGI_IPC_PURE_PYTHON", "") in ("", "0")


def core_for(mem, layout: L.Layout):
    """A C core over the mapped segment ``mem``, or None (the Python hot path does it all).

    Call it once the segment lock is set up (it reads which lock the segment uses). It holds a
    buffer of the map, so its owner calls ``release()`` before closing the map.
    """
    if not AVAILABLE:
        return None
    robust = mem[L.H_LOCK_KIND] == L.LOCK_ROBUST_MUTEX  # else the locked_* steps always answer BUSY
    return _hotcore.Core(mem, NOT_HANDLED, BUSY, HELD, robust, layout.entries, layout.chunks, layout.journal,
                         layout.wakers, layout.n_chunks, layout.n_entries, _PAUSE_AT)
