"""Consumer windows: no more open windows on a queue than receives wait on it.

RabbitMQ counts only *ready* messages against ``x-max-length``, so the broker may push only
what receives wait for (receiving.py says why and how). Here: starting and cancelling
consumers so their open windows match the waiting receives (up to what the queue's traffic
has shown it needs: receives waiting for group copies need none), settling what a cancelled
consumer held only after its cancel is on the wire, and letting a queue's consumers go
``LINGER`` seconds after its last receive. A window is opened as soon as a receive waits;
one no longer needed is closed a loop turn later (see ``on_waiter``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .pika_compat import cancel_nowait, consume_nowait
from .queue_state import MAX_WINDOWS, AfterCancel, Consumer, Held, Parked, QueueState, Settlement, acked, unacked, usable

LINGER = 0.1  # seconds consumers (and what they hold unacked) outlive the last receive on a queue


class Windows:
    """The consumers of one loop's queues, found by consumer tag."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_message: Callable[..., None],
                 on_idle: Callable[[QueueState], None], on_given_back: Callable[[str, Parked], None]):
        self._loop = loop
        self._on_message = on_message
        self._on_idle = on_idle  # a queue's consumers were let go: its state may go too
        self._on_given_back = on_given_back  # a parked delivery goes back to the broker unacked
        self.tags: dict[str, QueueState] = {}
        self._acks_due: dict[int, Any] = {}  # delivery tag -> carrier: taken, ack after a cancel

    def balance_soon(self, state: QueueState) -> None:
        if not state.balance_due:
            state.balance_due = True
            self._loop.call_soon(self.balance, state)

    def on_waiter(self, state: QueueState) -> None:
        """A receive began waiting: open its window now, but shrink only a turn later.

        A fan-out wakes many receives at once and each calls receive() again in the next
        turn; shrinking at once would cancel windows the next receive opens again (a
        basic.cancel and a basic.consume per member per group_send). A window left open
        for that turn is no wider a gap than a delivery in flight when a receive goes.
        """
        if len(state.open) < min(state.waiters.size, MAX_WINDOWS, state.allowed):  # _wanted(state)
            self.balance(state)
        elif not state.balance_due:  # balance_soon(state), written out: once per member and copy
            state.balance_due = True
            self._loop.call_soon(self.balance, state)

    def balance(self, state: QueueState) -> None:
        """Settle taken deliveries and make open windows match waiting receives exactly."""
        state.balance_due = False
        carrier = state.carrier
        if not usable(carrier):
            return
        wanted = _wanted(state)
        opened = state.open
        while state.taken and len(opened) < wanted:
            consumer = next(iter(state.taken.values()))
            state.hold(consumer, Held.NOTHING)  # a receive waits again: reopen this window
            carrier.basic_ack(consumer.delivery_tag)
        while len(opened) > wanted:
            self.cancel(state, opened[next(reversed(opened))])
        while len(opened) < wanted:
            consumer = Consumer(consume_nowait(carrier, state.name, self._on_message))
            state.add_consumer(consumer)
            self.tags[consumer.tag] = state
        if not wanted:
            self._maybe_idle(state)

    def cancel(self, state: QueueState, consumer: Consumer, then: Settlement | None = None,
               done: Callable[[], None] | None = None) -> None:
        """basic.cancel, and only after it ack/nack what the consumer held, so the window that
        reopens is no longer there to push into."""
        carrier = state.carrier
        state.drop_consumer(consumer.tag)
        self.tags.pop(consumer.tag, None)
        if then is not None and then.action is AfterCancel.ACK:
            self._acks_due[then.delivery_tag] = carrier  # close() sends it if the reply never comes

        def cancelled(frame: Any = None) -> None:
            if then is not None and then.action is AfterCancel.ACK:
                if self._acks_due.pop(then.delivery_tag, None) is not None and usable(carrier):
                    carrier.basic_ack(then.delivery_tag)
            elif then is not None and usable(carrier):
                carrier.basic_nack(then.delivery_tag, requeue=True)
            if done is not None:
                done()

        try:
            if cancel_nowait(carrier, consumer.tag):
                cancelled()  # on the wire after the cancel: the broker handles them in order
            else:
                carrier.basic_cancel(consumer.tag, callback=cancelled)
        except Exception:  # noqa: BLE001 - channel closed: the broker requeued what it held
            if done is not None:
                done()

    def stop(self, state: QueueState) -> asyncio.Future[None]:
        """Cancel every consumer of the queue and put parked, unacked messages back in their
        places; the future is done once the broker has them back."""
        finished: asyncio.Future[None] = self._loop.create_future()
        state.allowed = 1  # demand is proven again, from one window
        held: dict[str, Parked] = {}  # consumer tag -> what it holds
        for channel, entry in state.parked.items():
            if unacked(entry) and entry.consumer is not None:
                held[entry.consumer.tag] = entry
                self._on_given_back(channel, entry)
        state.parked = state.parked.keeping(acked)
        state.unacked = 0
        consumers = list(state.consumers.values())
        left = [len(consumers)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0 and not finished.done():
                finished.set_result(None)

        for consumer in consumers:
            holding = held.get(consumer.tag)
            then: Settlement | None
            if holding is not None and holding.tag is not None:
                then = Settlement(AfterCancel.REQUEUE, holding.tag)
            elif consumer.held is Held.TAKEN and consumer.delivery_tag is not None:
                then = Settlement(AfterCancel.ACK, consumer.delivery_tag)
            else:
                then = None
            self.cancel(state, consumer, then=then, done=one_done)
        if not consumers:
            finished.set_result(None)
        return finished

    def spill(self, state: QueueState) -> None:
        """Too many deliveries nobody waits for while a sibling waits: take them into the
        local buffer so the broker sends more."""
        for entry in state.parked:
            if entry.tag is not None and entry.consumer is not None:
                self.cancel(state, entry.consumer, then=Settlement(AfterCancel.ACK, entry.tag))
            entry.tag = entry.consumer = None
        state.unacked = 0

    def _maybe_idle(self, state: QueueState) -> None:
        if not state.waiters.first and state.idle_timer is None:
            state.idle_timer = self._loop.call_later(LINGER, self._idle, state)

    def _idle(self, state: QueueState) -> None:
        state.idle_timer = None
        if state.waiters.first:
            return
        self.stop(state)
        self._on_idle(state)

    def forget_all(self) -> None:
        """The consume channel is gone, and with it every consumer and unacked delivery."""
        self.tags.clear()
        self._acks_due.clear()

    def send_due_acks(self) -> None:
        """On close: the acks still waiting for a cancel's reply go now."""
        for tag, carrier in self._acks_due.items():
            if usable(carrier):
                carrier.basic_ack(tag)
        self._acks_due.clear()


def _wanted(state: QueueState) -> int:
    """Open windows the queue should have: one per waiting receive, up to MAX_WINDOWS, and
    up to what its traffic has shown it needs (``allowed``). Receives waiting for group
    copies (process_groups.py), not for the queue itself, would otherwise start a consumer
    each for nothing: 32 basic.consume the broker works through before the first copy."""
    return min(state.waiters.size, MAX_WINDOWS, state.allowed)
