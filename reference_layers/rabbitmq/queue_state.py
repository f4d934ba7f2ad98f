"""Receive-side state of one broker queue on one loop: its waiting receives, its consumers
(each a window of one delivery) and what they hold.

The rules that use this state are in receiving.py (receives) and windows.py (consumers).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..core.waiters import Waiters
from .parked import ParkedMessages

# Open windows per queue at most: fewer windows than waiting receives is always safe (the
# broker keeps counting what it has not pushed); a fan-out to thousands of waiting members of
# one process gets its copies through process_groups.py, not through a consumer per receive.
MAX_WINDOWS = 32


class Held(Enum):
    """What a consumer's window of one delivery holds."""

    NOTHING = "nothing"  # open: the broker may push one delivery into it
    PARKED = "parked"  # shut by a delivery for a sibling channel nobody waits on (unacked)
    TAKEN = "taken"  # shut by a delivery a receive took: acked when a receive waits again


class AfterCancel(Enum):
    """What happens to a consumer's held delivery once its basic.cancel is on the wire."""

    ACK = "ack"  # a receive took it: gone for good
    REQUEUE = "requeue"  # parked: back to the queue (basic.nack requeue)


@dataclass(frozen=True, slots=True)
class Settlement:
    """A held delivery to settle after its consumer's cancel."""

    action: AfterCancel
    delivery_tag: int


class Consumer:
    """One basic.consume with a window of one delivery."""

    __slots__ = ("tag", "held", "delivery_tag")

    def __init__(self, tag: str):
        self.tag = tag
        self.held = Held.NOTHING
        self.delivery_tag: int | None = None  # of what it holds


class Parked:
    """A delivery for a channel no receive waits on yet (parked under that channel's name; a
    group copy is one entry parked for each of its members)."""

    __slots__ = ("body", "tag", "consumer", "arrived", "message_id")

    def __init__(self, body: bytes, tag: int | None, consumer: Consumer | None, arrived: float,
                 message_id: str | None = None):
        self.body = body
        self.tag = tag  # delivery tag while unacked, None once acked (local buffer)
        self.consumer = consumer  # the consumer whose window it holds shut (None once acked)
        self.arrived = arrived  # monotonic
        self.message_id = message_id  # forgotten by dedupe.Seen if it goes back to the broker unacked


def unacked(entry: Parked) -> bool:
    """A delivery still unacked: it holds its consumer's window shut, and goes back to the
    queue if the connection drops."""
    return entry.tag is not None


def acked(entry: Parked) -> bool:
    """Acked into the local buffer (a group copy, a spilled delivery): only this loop has it."""
    return entry.tag is None


class QueueState:
    """Receive-side state of one broker queue on this loop."""

    __slots__ = ("name", "waiters", "parked", "unacked", "consumers", "open", "taken",
                 "carrier", "starting", "idle_timer", "balance_due", "allowed")

    def __init__(self, name: str):
        self.name = name
        self.waiters = Waiters()  # the receives waiting, per channel (``channel in waiters.first``)
        self.parked: ParkedMessages[Parked] = ParkedMessages()
        self.unacked = 0  # parked deliveries still unacked
        self.consumers: dict[str, Consumer] = {}
        self.open: dict[str, Consumer] = {}  # the consumers whose window is open
        self.taken: dict[str, Consumer] = {}  # the consumers holding a taken delivery
        self.carrier: Any = None  # the pika channel its consumers live on; None until declared
        self.starting: asyncio.Future[None] | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.balance_due = False
        self.allowed = 1  # open windows its traffic has shown it needs (windows.py), doubled per delivery

    def has_waiters(self) -> bool:
        return bool(self.waiters.first)

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.tag] = consumer
        self.open[consumer.tag] = consumer

    def drop_consumer(self, tag: str) -> None:
        self.consumers.pop(tag, None)
        self.open.pop(tag, None)
        self.taken.pop(tag, None)

    def clear_consumers(self) -> None:
        self.consumers.clear()
        self.open.clear()
        self.taken.clear()

    def hold(self, consumer: Consumer, held: Held) -> None:
        """Set what the consumer's window holds, keeping the open/taken indexes in step."""
        tag = consumer.tag
        self.open.pop(tag, None)
        self.taken.pop(tag, None)
        consumer.held = held
        if tag in self.consumers:
            if held is Held.NOTHING:
                self.open[tag] = consumer
            elif held is Held.TAKEN:
                self.taken[tag] = consumer

    def delivered(self) -> None:
        """A delivery came: the queue has traffic, so it may use twice the windows."""
        if self.allowed < MAX_WINDOWS:
            self.allowed = min(MAX_WINDOWS, 2 * self.allowed)

    def any_channel(self) -> str:
        return next(iter(self.waiters.first), None) or self.parked.oldest_channel() or ""


def usable(carrier: Any) -> bool:
    """The pika channel is there and open."""
    return carrier is not None and bool(carrier.is_open)
