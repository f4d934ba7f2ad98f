"""What a loop held for its receives, carried to the layer object's next loop when it ends.

A loop holds messages the broker no longer has: group copies fanned out to members that had not
received yet, messages taken in from a process queue ahead of a copy (process_groups.py), and
deliveries spilled into the local buffer (windows.py). A loop ends with every ``asyncio.run`` and
every ``async_to_sync`` call while the layer object lives on; what it held would be lost with it.
So it is left to the layer object (:class:`CarriedOver`), and the next loop to connect, or to
receive while it is there (another loop may live on: ``async_to_sync`` runs calls on loops of
their own beside the server's), takes it on (:func:`take_on`), ahead of anything parked after,
each channel's order kept.

Unless a flush (in any process) came between: the loop looks first. A queue with members fed
here (process_groups.py) has a copies queue that only the owner declares, so its copies queue gone
from a broker that kept its state means a flush; any other queue gone means a flush or its
expiry; either way what it held goes too. (Such an other queue that a flush deleted and a sender
declared again before the next loop looked is not told apart: that one window is left.)
Deliveries still unacked are not carried: the broker requeues them when the loop's connection
closes.
"""

from __future__ import annotations

import threading

from .link import Link
from .local_book import LocalBook
from .queue_state import Parked, acked, unacked
from .receiving import Receiver
from .session import Session


class CarriedOver:
    """Per queue, what ended loops held (oldest first); loops end on their own threads too."""

    def __init__(self) -> None:
        self._held: dict[str, list[tuple[str, Parked]]] = {}  # queue -> (channel, entry), in order
        self._lock = threading.Lock()
        self.pending = False  # something is carried: read on every receive, so a plain attribute

    def leave(self, receiver: Receiver) -> None:
        """An ending loop's receiver leaves what it holds acked here (it must not hold it after)."""
        with self._lock:
            for queue, state in receiver.queues.items():
                held = [(channel, entry) for channel, entry in state.parked.items() if acked(entry)]
                if held:  # (those still unacked stay: the broker requeues them, see Receiver.close)
                    self._held.setdefault(queue, []).extend(held)
                    state.parked = state.parked.keeping(unacked)
            self.pending = bool(self._held)

    def take(self) -> dict[str, list[tuple[str, Parked]]]:
        with self._lock:
            held, self._held = self._held, {}
            self.pending = False
        return held

    def put_back(self, held: dict[str, list[tuple[str, Parked]]]) -> None:
        """What ``take`` gave and was not taken on: ahead of anything left here since."""
        with self._lock:
            for queue, entries in held.items():
                self._held[queue] = [*entries, *self._held.get(queue, [])]
            self.pending = bool(self._held)

    def drop(self, queues: set[str] | None = None) -> None:
        """What is carried for ``queues`` (all if None) goes: flushed, or deleted by close()."""
        with self._lock:
            if queues is None:
                self._held.clear()
            for queue in queues or ():
                self._held.pop(queue, None)
            self.pending = bool(self._held)


async def take_on(carried: CarriedOver, session: Session, link: Link, receiver: Receiver,
                  book: LocalBook) -> None:
    """Park what ended loops carried, in front, unless a flush took it since (on a loop's connect,
    or its receive while something is carried). If the link breaks meanwhile, what is not parked
    yet stays carried."""
    if not carried.pending:
        return
    held = carried.take()
    try:
        kept = await session.broker_kept_state(link)
        for queue in list(held):
            witness = session.shared.names.group_copies(queue) if book.has(queue) else queue
            if not kept or await session.exists(link, witness):  # else flushed (or expired) since
                state = receiver.state_of(queue)
                for channel, entry in reversed(held[queue]):
                    state.parked.park_first(channel, entry)
                for channel in {channel for channel, _entry in held[queue]}:
                    receiver.serve(state, channel)
            del held[queue]
    finally:
        if held:
            carried.put_back(held)
