"""Flush answers: a flush returns once the loops consuming the queues it deleted dropped what they held.

The broker cancels every consumer of a deleted queue, and the loop that owns one drops what it
parked from that queue when it reads the cancel (receiving.py, process_groups.py). But the cancel
travels on that loop's connection and the delete-ok on the flusher's: a loop told of the flush
some other way (a pipe, a message through another server) may run a receive before it reads the
cancel, and serve a message sent before the flush (XP-4). So flush first asks the broker how many
consumers each queue has as it deletes it (``broker_ops.flush``), and once it has deleted them
all waits until the loops owning those consumers have answered for as many, or ``ACK_TIMEOUT``.

A loop answers right after it dropped what it held: a publish to ``amq.direct`` with the routing
key ``{prefix}:!flushed``, naming the queue and how many of its consumers the cancel ended. The
flusher binds a queue of its own to that key (exclusive, server-named) when it meets the first
queue that other loops consume, and keeps it until it returns.
Its own loop's consumers it counts out: it drops what they held itself (``Receiver.flushed``).
A loop that could not answer in time was not running (blocked, or stopped between
``run_until_complete`` calls); the flush returns without it, as the Redis layer's does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pika

from ..core.heartbeat import ACK_TIMEOUT
from .futures import settle, within
from .link import Link
from .names import GROUPS_EXCHANGE, BrokerNames

log = logging.getLogger(__name__)


def encode_answer(queue: str, consumers: int) -> bytes:
    return f"{consumers} {queue}".encode()


def decode_answer(body: bytes) -> tuple[str, int]:
    count, _, queue = body.decode().partition(" ")
    return queue, int(count)


class Tally:
    """Answers still owed per queue (no I/O): ``owed`` counts consumers of other loops."""

    def __init__(self, owed: Counter[str], loop: asyncio.AbstractEventLoop):
        self.owed = +owed  # only queues with consumers left
        self.all_heard: asyncio.Future[None] = loop.create_future()
        if not self.owed:
            self.all_heard.set_result(None)

    def heard(self, queue: str, consumers: int) -> None:
        left = self.owed.get(queue, 0) - consumers
        if left > 0:
            self.owed[queue] = left
        else:
            self.owed.pop(queue, None)
        if not self.owed:
            settle(self.all_heard, result=None)

    def missing(self) -> int:
        return sum(self.owed.values())


class Listening:
    """The flusher's answers queue, bound to ``routing_key`` until ``close``; answers from
    ``own`` (this loop's answerer id) are its own and not counted."""

    def __init__(self, link: Link, routing_key: str, own: str):
        self.link = link
        self.routing_key = routing_key
        self.own = own
        self.queue = ""
        self.tally: Tally | None = None
        self._early: list[tuple[str, int]] = []  # heard before the tally was set
        self._tag: str | None = None
        self._carrier: Any = None
        self.opened = False  # bound: answers are heard from now on

    async def open(self) -> None:
        """Bind and consume the answers queue, once: before the first queue in use is deleted
        (a flush that meets none costs no more than it did before answers)."""
        if self.opened:
            return
        reply = await self.link.admin("queue_declare", "", exclusive=True, auto_delete=True)
        self.queue = reply.queue
        await self.link.admin("queue_bind", self.queue, GROUPS_EXCHANGE, routing_key=self.routing_key)
        self._carrier = await self.link.consume_channel_ready()
        self._tag = self._carrier.basic_consume(self.queue, self._on_answer, auto_ack=True)
        self.opened = True

    def _on_answer(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if properties.app_id == self.own:
            return
        answer = decode_answer(body)
        if self.tally is None:
            self._early.append(answer)
        else:
            self.tally.heard(*answer)

    async def wait(self, owed: Counter[str]) -> None:
        self.tally = tally = Tally(owed, self.link.loop)
        for answer in self._early:
            tally.heard(*answer)
        try:
            await within(asyncio.shield(tally.all_heard), ACK_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("flush: %d consumer(s) in other event loops did not answer within %g s",
                        tally.missing(), ACK_TIMEOUT)

    def close(self) -> None:
        """Cancel the consumer: the queue, auto-delete and exclusive, goes with it."""
        if self._tag is not None and self._carrier is not None and self._carrier.is_open:
            self._carrier.basic_cancel(self._tag)
        self._tag = None


def answer(link: Link | None, names: BrokerNames, answerer: str, queue: str, consumers: int) -> None:
    """Tell any flush under way that this loop dropped what ``consumers`` consumers of ``queue`` held."""
    if link is None or not link.open:
        return  # nobody can hear it; the flush stops waiting at its timeout
    published = link.publish(GROUPS_EXCHANGE, names.flush_answers, encode_answer(queue, consumers),
                             pika.BasicProperties(app_id=answerer))
    published.add_done_callback(_ignore)


def _ignore(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
