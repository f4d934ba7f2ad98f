"""``reference_layers.ipc.IPCChannelLayer``: a channel layer for many processes on one
machine, with no server, over POSIX shared memory.

Use it as ``CHANNEL_LAYERS = {"default": {"BACKEND": "reference_layers.ipc.IPCChannelLayer",
"CONFIG": {"prefix": "myproject"}}}``. Config keys: ``prefix`` (names the shared segment
``/asgi-ipc.<prefix>``; projects on one machine keep apart by prefix; default ``"asgi"``),
``expiry``, ``group_expiry``, ``capacity``, ``channel_capacity``, ``segment_size`` (bytes,
default 64 MiB; when it is full, send raises ``SegmentFull``, a ``ChannelFull``), ``mode``
(permissions of the segment, default 0600), ``message_size_limit``,
``symmetric_encryption_keys``, ``receive_spin`` (seconds a receive that finds its channel
empty keeps looking before it sleeps, default 0.0002; adapts down on a busy machine; 0: off).

How it fits together (one module each): ``layout`` (where things live in the segment),
``robust_mutex`` (the segment lock: a robust pthread mutex in the segment, which the kernel
hands on when its holder dies), ``locking`` (fcntl record locks: attaching, and the segment
lock where there are no robust mutexes), ``journal`` (the redo journal that makes a crash at
any point harmless), ``segment`` (opening, repair, waker slots, flush), ``store`` (the
channel/group/waiter structures), ``hotpath`` + ``hotentries`` (one-chunk sends and
receives, creating and deleting channel entries, each with one compact journal commit,
falling back to ``store``), ``_hotcore.c`` + ``native`` (the commonest send and receive in
C, built where a compiler is, same journal; ``ASGI_IPC_PURE_PYTHON=1`` turns it off),
``operations`` (one locked step per call), ``spinning`` (a
waiting receive looks again briefly before it sleeps), ``wakeups`` (datagram pokes to waiting
event loops), ``layer`` (the asyncio API), ``consistency`` (a checker) and
``__main__`` (``python -m reference_layers.ipc --cleanup PREFIX``).

No semaphores are used: the locks live in the segment (or are fcntl locks on its
descriptor), and wake-ups go through sockets in the abstract namespace that disappear with
their process, so the only named object to clean up is the segment itself.
"""

from ..base import ChannelFull, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .layer import IPCChannelLayer
from .segment import SegmentFull

__all__ = ["IPCChannelLayer", "ChannelFull", "SegmentFull", "MessageTooLarge", "UnserialisableMessage",
           "LayerConfigError"]
