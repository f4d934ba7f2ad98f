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

Module map, in chain order (each builds on the ones above it):

- ``layout``: where everything lives in the segment (header, journal, buckets, entries, chunks).
- ``robust_mutex``: the segment lock, a robust pthread mutex the kernel hands on when its holder dies.
- ``locking``: fcntl record locks: attaching, and the segment lock where there are no robust mutexes.
- ``journal``: the redo journal that makes a crash at any point harmless.
- ``segment``: opening, crash repair, waker slots, flush.
- ``messages``: a message as a chain of chunks: taking chunks, copying in and out, freeing.
- ``groups``: memberships, each listed by its group and hashed by group and channel (a join or a leave
  finds it at once in a group of any size).
- ``inbox``: a process's inbox: one group_send copy for all of its members, taken apart by their owner.
- ``store``: channels, groups and waiters as linked structures, changed through a journal transaction.
- ``hotpath`` + ``hotentries``: one-chunk sends and receives, creating and deleting channel entries,
  each one compact journal commit; anything unusual falls back to ``store``.
- ``native`` + ``_hotcore.c``: the commonest send and receive in C, where it was built (same journal;
  ``ASGI_IPC_PURE_PYTHON=1`` turns it off).
- ``shelf``: the group copies a layer object took out of its inboxes, for its receives (no lock).
- ``operations``: each layer call as one locked step (C first, then ``hotpath``, then ``store``).
- ``spinning``: a waiting receive looks again briefly before it sleeps (its budget per loop).
- ``wakeups``: datagram pokes that wake event loops waiting on a channel.
- ``layer``: the asyncio API, ``IPCChannelLayer``.

Beside the chain: ``statistics`` (what ``layer.statistics()`` reads from the segment),
``consistency`` (a checker of the segment's structures) and ``__main__``
(``python -m reference_layers.ipc --list | --check | --cleanup | --stats``).

No semaphores are used: the locks live in the segment (or are fcntl locks on its
descriptor), and wake-ups go through sockets in the abstract namespace that disappear with
their process, so the only named object to clean up is the segment itself.
"""

from ..core.errors import ChannelFull, ForeignProcessChannel, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .layer import IPCChannelLayer
from .segment import SegmentFull

__all__ = ["IPCChannelLayer", "ChannelFull", "SegmentFull", "MessageTooLarge", "UnserialisableMessage",
           "LayerConfigError", "ForeignProcessChannel"]
