"""The optional C hot path (``_hotcore.c``): loaded if it was built and agrees with the layout.

Why optional: the layer must work wherever posix_ipc does, compiler or not; the C steps only
make the commonest send and receive cheaper, the pure-Python hot path does the same work.
``ASGI_IPC_PURE_PYTHON=1`` turns it off (the tests run the crash tests both ways).
"""

from __future__ import annotations

import os
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING, Final

from . import layout as L
from .journal import _PAUSE_AT

if TYPE_CHECKING:
    import mmap

    from ._hotcore import Core

_hotcore: ModuleType | None
try:
    from . import _hotcore
except ImportError:  # not built: no compiler, or a source checkout that was never installed
    _hotcore = None


class Answer(Enum):
    """What a step answers instead of a result; the C steps return these very objects."""

    NOT_HANDLED = "take the Python path"  # nothing was written: the Python code does the step
    BUSY = "lock taken elsewhere"  # locked_*: nothing was done and the lock is not ours
    HELD = "lock held, go on"  # locked_*: the lock is ours and still held; repair if needed, go on


def _agrees(module: ModuleType) -> bool:
    """Every layout number the C code was compiled with is layout.py's."""
    return all(getattr(L, name) == value for name, value in module.LAYOUT.items())


NOT_HANDLED: Final = Answer.NOT_HANDLED  # module names, read as fast as the old object() sentinels
BUSY: Final = Answer.BUSY
HELD: Final = Answer.HELD
AVAILABLE = _hotcore is not None and _agrees(_hotcore) and os.environ.get("ASGI_IPC_PURE_PYTHON", "") in ("", "0")


def core_for(mem: mmap.mmap, layout: L.Layout) -> Core | None:
    """A C core over the mapped segment ``mem``, or None (the Python hot path does it all).

    Call it once the segment lock is set up (it reads which lock the segment uses). It holds a
    buffer of the map, so its owner calls ``release()`` before closing the map.
    """
    if not AVAILABLE or _hotcore is None:
        return None
    robust = mem[L.H_LOCK_KIND] == L.LOCK_ROBUST_MUTEX  # else the locked_* steps always answer BUSY
    return _hotcore.Core(mem, NOT_HANDLED, BUSY, HELD, robust, layout.entries, layout.chunks, layout.journal,
                         layout.wakers, layout.n_chunks, layout.n_entries, _PAUSE_AT)
