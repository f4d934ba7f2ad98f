"""IPCChannelLayer: the channel layer API on top of the shared segment.

Every check, the codec and the capacity rules come from ``reference_layers.core``; this
module only turns each call into one locked step on the segment (``operations.py``) and
parks waiting receives on the event loop's wake-up socket (``wakeups.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time

from ..core.codec import DEFAULT_MESSAGE_SIZE_LIMIT
from ..core.config import reject_unknown_keys
from ..core.errors import LayerConfigError
from ..core.layer_core import LayerCore
from ..core.names import ChannelNamer, check_channel_name
from ..core.statistics import STATISTICS_EXTENSION, Counters, LayerStatistics
from . import segment as segments
from .layout import DEFAULT_SEGMENT_SIZE, H_FLUSHES, MIN_SEGMENT_SIZE, Layout
from .operations import Operations
from .shelf import Shelf
from .spinning import SpinBudget, spin_for
from .statistics import read_statistics
from .store import Full
from .wakeups import NAME_SEPARATOR, WAKE_ALL, LoopWaker, Poker

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_CONFIG_KEYS = ("prefix", "expiry", "group_expiry", "capacity", "channel_capacity", "segment_size", "mode",
                "message_size_limit", "symmetric_encryption_keys", "receive_spin")
_W_FLUSHES = H_FLUSHES >> 2  # the segment's flush count, as a word index
DEFAULT_RECEIVE_SPIN = 0.0002  # seconds a receive that finds nothing keeps looking (spinning.py)


class _Attachment:
    """This layer's hold on the process's shared view of the segment."""

    def __init__(self, segment, shelf: Shelf, namer: ChannelNamer):
        self.segment = segment
        self.poker = Poker(segment)
        self.ops = Operations(segment, self.poker, shelf, namer)
        self.fork_generation = segments.FORK_GENERATION[0]


class IPCChannelLayer(LayerCore):
    """Channels and groups in POSIX shared memory, for processes on one machine.

    Processes meet through ``prefix``: every layer built with the same prefix, by any
    process of the same user, shares the segment ``/asgi-ipc.<prefix>``.
    """

    extensions = [*LayerCore.extensions, STATISTICS_EXTENSION]

    def __init__(self, prefix="asgi", expiry=60, group_expiry=86400, capacity=100, channel_capacity=None,
                 segment_size=DEFAULT_SEGMENT_SIZE, mode=0o600, message_size_limit=DEFAULT_MESSAGE_SIZE_LIMIT,
                 symmetric_encryption_keys=None, receive_spin=DEFAULT_RECEIVE_SPIN, **unknown):
        reject_unknown_keys("IPCChannelLayer", unknown, _CONFIG_KEYS)
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise LayerConfigError(
                f"prefix must be 1-64 ASCII letters, digits, '_', '.', '-' (it names the shared "
                f"segment), got {prefix!r}")
        if isinstance(segment_size, bool) or not isinstance(segment_size, int) or segment_size < MIN_SEGMENT_SIZE:
            raise LayerConfigError(f"segment_size must be an int of at least {MIN_SEGMENT_SIZE} bytes, got {segment_size!r}")
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 < mode <= 0o777 or not mode & 0o600 == 0o600:
            raise LayerConfigError(f"mode must be file permission bits including 0o600, got {mode!r}")
        if isinstance(receive_spin, bool) or not isinstance(receive_spin, (int, float)) or not 0 <= receive_spin <= 1:
            raise LayerConfigError(f"receive_spin must be 0 to 1 seconds, got {receive_spin!r}")
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity,
                         channel_capacity=channel_capacity, message_size_limit=message_size_limit,
                         symmetric_encryption_keys=symmetric_encryption_keys)
        room = Layout.for_size(segment_size).message_room
        if message_size_limit is not None and message_size_limit > room:
            raise LayerConfigError(
                f"message_size_limit {message_size_limit} does not fit in a segment of {segment_size} bytes "
                f"(room for {room}); raise segment_size or lower message_size_limit")
        self.prefix = prefix
        self.segment_size = segment_size
        self.mode = mode
        self.receive_spin = receive_spin
        self._attach_lock = threading.Lock()
        self._attachment: _Attachment | None = None
        self._wakers: dict[asyncio.AbstractEventLoop, LoopWaker] = {}
        self._counters = Counters()  # for statistics(); this object's, as in the other layers
        self._shelf = Shelf(self._wake_other_loops)  # group copies taken out of this object's inboxes (shelf.py)
        self._attach()

    # --- attachment ------------------------------------------------------------------------
    def _attach(self) -> _Attachment:
        with self._attach_lock:
            current = self._attachment
            if current is not None and current.fork_generation == segments.FORK_GENERATION[0]:
                return current
            self._wakers = {}  # inherited from a parent process: not ours to close
            if current is not None:
                self._shelf = Shelf(self._wake_other_loops)  # a parent's copies are the parent's to receive
            attachment = _Attachment(segments.attach(self.prefix, self.segment_size, self.mode), self._shelf,
                                     self.namer)
            self._attachment = attachment
            return attachment

    def _current(self) -> _Attachment:
        attachment = self._attachment
        if attachment is None or attachment.fork_generation != segments.FORK_GENERATION[0]:
            attachment = self._attach()
        return attachment

    @property
    def segment_name(self) -> str:
        return segments.segment_name(self.prefix)

    def _waker(self, attachment: _Attachment) -> LoopWaker:
        loop = asyncio.get_running_loop()
        waker = self._wakers.get(loop)
        if waker is not None and waker.segment is attachment.segment and not waker.closed:
            return waker
        for old_loop, old in list(self._wakers.items()):  # loops of finished async_to_sync calls
            if old_loop.is_closed() or old.segment is not attachment.segment:
                old.close()
                self._wakers.pop(old_loop, None)
        waker = self._wakers[loop] = LoopWaker(attachment.segment, loop, attachment.ops.unregister,
                                               SpinBudget(self.receive_spin))
        return waker

    def _wake_other_loops(self, channels: list[bytes]) -> None:
        """Copies for ``channels`` were just put on the shelf: a receive of another event loop
        of this object (another thread) that looked there just before may be arming now, and no
        sender pokes it for those copies; it is woken to look again."""
        wakers = self._wakers
        if not wakers:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        payload = NAME_SEPARATOR.join(channels)
        for loop, waker in list(wakers.items()):
            if loop is not current:
                waker.notify(payload)

    # --- channels --------------------------------------------------------------------------
    # send() and receive() are LayerCore's (the same name check and codec, from core) in one
    # coroutine each instead of two: they run once per message, where every step shows.
    async def send(self, channel: str, message: dict) -> None:
        """Queue ``message`` on ``channel``; raises ChannelFull if it holds its capacity."""
        self._queue(check_channel_name(channel), self.codec.encode(message))

    async def _send(self, channel: str, data: bytes) -> None:
        self._queue(channel, data)

    def _queue(self, channel: str, data: bytes) -> None:
        attachment = self._current()
        now = time.monotonic()
        try:  # queues the message in one locked step, then pokes the receives waiting for it
            attachment.ops.send(channel.encode(), data, now + self.expiry, self.capacities.for_channel(channel), now)
        except Full:
            self._counters.channel_full_raised += 1
            raise segments.ChannelFull(f"channel {channel!r} is full") from None
        except segments.SegmentFull as exc:
            self._counters.channel_full_raised += 1  # a SegmentFull is a ChannelFull too
            raise segments.SegmentFull(f"channel {channel!r} cannot take more: {exc}") from None

    async def receive(self, channel: str) -> dict:
        """Wait for, and return, the next message on ``channel``."""
        self.check_receivable(check_channel_name(channel))
        attachment, name, data = self._pop(channel)
        if data is None:
            data = await self._wait_for(attachment, name)
        return self.codec.decode(data)

    async def _receive(self, channel: str) -> bytes:
        attachment, name, data = self._pop(channel)
        return data if data is not None else await self._wait_for(attachment, name)

    def _pop(self, channel: str) -> tuple[_Attachment, bytes, bytes | None]:
        """Pop the next message of ``channel`` if it has one, touching no event loop: a group
        copy held here first (it is older than what its queue holds, shelf.py)."""
        attachment = self._current()
        name = channel.encode()
        now = time.monotonic()
        if name in self._shelf.first:
            data = self._shelf.take(name, now, attachment.segment.words[_W_FLUSHES])
            if data is not None:
                return attachment, name, data
        return attachment, name, attachment.ops.pop(name, now)

    async def _wait_for(self, attachment: _Attachment, name: bytes) -> bytes:
        """Wait for a message on ``name``, which a pop just found empty.

        A receive that finds a message never gets here: it touches neither the event loop
        nor the wake-up machinery. This one first spins briefly (``spinning.py``), then
        registers its loop on the channel and arms that registration in the same locked step
        as another pop (so any later send pokes it), sleeps until poked, and pops again. A
        registration outlives the receive (see ``wakeups.py``); one left armed by a cancelled
        receive costs each sending process at most one spurious poke before it is dropped.
        The listener's future is awaited here, not in a coroutine of its own: a fan-out's
        members wake by the hundred, and each frame resumed shows.
        """
        ops = attachment.ops
        waker = self._waker(attachment)
        listener = waker.listen(name)
        try:
            seconds = waker.spin.next() if self.receive_spin else 0.0
            if seconds:  # first stay awake briefly (spinning.py)
                data = await spin_for(ops, waker, name, waker.spin, seconds, self._shelf.first)
                if data is not None:
                    return data
            loop, shelf = waker.loop, self._shelf
            while True:
                if name in shelf.first:  # another receive took its process's inbox apart meanwhile
                    data = shelf.take(name, time.monotonic(), attachment.segment.words[_W_FLUSHES])
                    if data is not None:
                        return data
                waker.registered.add(name)
                data = ops.pop_or_arm(name, time.monotonic(), slot=waker.slot, token=waker.token,
                                      disarm=waker.listening(name) <= 1, epoch=waker.epoch())
                if data is not None:
                    return data
                listener.future = loop.create_future()
                try:
                    await listener.future
                finally:
                    listener.future = None
        finally:
            if waker.unlisten(name, listener) and not waker.closed:
                waker.drop_later(name)

    # --- groups ----------------------------------------------------------------------------
    async def _group_add(self, group: str, channel: str) -> None:
        self._current().ops.group_add(group.encode(), channel.encode(), time.monotonic() + self.group_expiry)

    async def _group_discard(self, group: str, channel: str) -> None:
        self._current().ops.group_discard(group.encode(), channel.encode())

    async def _group_send(self, group: str, data: bytes) -> None:
        now = time.monotonic()
        capacity_of = self.capacities.for_channel
        uniform = self.capacities.uniform  # then one capacity for every member, asked once
        self._counters.group_deliveries_missed += self._current().ops.group_send(
            group.encode(), data, now + self.expiry, uniform or (lambda name: capacity_of(name.decode())), now)

    # --- statistics ------------------------------------------------------------------------
    async def statistics(self, channels: list[str] | None = None) -> LayerStatistics:
        """Unexpired messages waiting per channel (``channels``, or every channel of the segment
        holding one) and the age of the oldest, read from its expiry stamp and this layer's
        ``expiry``; this object's ChannelFull and missed-group-copy counts. No server, so no
        connections (see ``statistics.py``)."""
        return read_statistics(self._current().segment, channels, self.expiry, self._counters, time.monotonic(),
                               self._shelf)

    # --- whole layer -----------------------------------------------------------------------
    async def _flush(self) -> None:
        self._shelf.clear()
        attachment = self._current()
        wakers = attachment.segment.flush()
        attachment.poker.poke(wakers, WAKE_ALL)  # their registrations are gone: re-register

    async def _close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        """Release the sockets and this layer's hold on the segment (the last one out of the
        last process unlinks it if it holds nothing). The layer re-attaches if used again."""
        with self._attach_lock:
            attachment, self._attachment = self._attachment, None
            wakers, self._wakers = self._wakers, {}
        for waker in wakers.values():
            waker.close()
        if attachment is not None and attachment.fork_generation == segments.FORK_GENERATION[0]:
            attachment.poker.close()
            segments.release(attachment.segment)

    def __repr__(self) -> str:
        return f"<IPCChannelLayer prefix={self.prefix!r} segment={self.segment_name} pid={os.getpid()}>"
