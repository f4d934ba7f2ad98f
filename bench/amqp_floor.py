"""What pika and the broker do here with no layer at all: the RabbitMQ floors.

Why: a layer that raises ChannelFull from send must hear the broker's confirm (publisher
confirms on a queue with ``x-max-length``), and its receive must take the message from the
broker. These floors do only that, as loosely as possible (the consumer is always open with
an unlimited window and takes messages with auto-ack, so nothing bounds what it buffers),
with the client every RabbitMQ layer of this project must use (pika, asyncio adapter): no
layer that keeps capacity exact can be faster than them on this machine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

BODY = b"x" * 60
QUEUE_ARGUMENTS = {"x-max-length": 1_000_000, "x-overflow": "reject-publish"}


class _Confirmed:
    """A pika channel in confirm mode whose publishes return futures of the broker's answer."""

    def __init__(self, channel, loop):
        self.channel = channel
        self.loop = loop
        self.pending: collections.OrderedDict[int, asyncio.Future] = collections.OrderedDict()
        self.sequence = 0
        channel.confirm_delivery(self._answered)

    def _answered(self, frame) -> None:
        method = frame.method
        tags = [t for t in self.pending if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            future = self.pending.pop(tag)
            if not future.done():
                future.set_result(isinstance(method, pika.spec.Basic.Ack))

    def publish(self, routing_key: str, exchange: str = "") -> asyncio.Future:
        self.sequence += 1
        future = self.loop.create_future()
        self.pending[self.sequence] = future
        self.channel.basic_publish(exchange, routing_key, BODY)
        return future


@contextlib.asynccontextmanager
async def amqp_queue(url: str):
    """A connection, a confirm-mode channel and a fresh queue: yields (confirmed, queue)."""
    loop = asyncio.get_running_loop()
    opened = loop.create_future()

    def failed(_connection, error):
        if not opened.done():
            opened.set_exception(RuntimeError(f"cannot open an AMQP connection: {error}"))

    connection = AsyncioConnection(pika.URLParameters(url), on_open_callback=opened.set_result,
                                   on_open_error_callback=failed, custom_ioloop=loop)
    await opened
    channel_open = loop.create_future()
    connection.channel(on_open_callback=channel_open.set_result)
    channel = await channel_open
    declared = loop.create_future()
    channel.queue_declare("", exclusive=True, arguments=QUEUE_ARGUMENTS, callback=declared.set_result)
    queue = (await declared).method.queue
    try:
        yield _Confirmed(channel, loop), queue
    finally:
        connection.close()


class _Inbox:
    """Deliveries of an auto-ack consumer with an unlimited window, and one task awaiting them."""

    def __init__(self, confirmed: _Confirmed, queue: str):
        self.loop = confirmed.loop
        self.arrived: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None
        confirmed.channel.basic_consume(queue, self._delivered, auto_ack=True)

    def _delivered(self, _channel, _method, _properties, body) -> None:
        self.arrived.append(body)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> bytes:
        while not self.arrived:
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.arrived.popleft()


async def confirm_rate(url: str, n: int) -> float:
    """Sequential confirmed publishes (the AMQP PING of a send): round trips per second."""
    async with amqp_queue(url) as (confirmed, queue):
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(n):
            await confirmed.publish(queue)
        return n / (loop.time() - start)


async def roundtrip_rate(url: str, n: int) -> float:
    """The roundtrip workload with no layer: publish, hear the confirm, take the delivery."""
    return await _roundtrips(url, n, _Inbox)


async def _roundtrips(url: str, n: int, taker) -> float:
    """n times: publish, hear the confirm, then take the delivery through ``taker``."""
    async with amqp_queue(url) as (confirmed, queue):
        loop = asyncio.get_running_loop()
        inbox = taker(confirmed, queue)
        start = loop.time()
        for _ in range(n):
            await confirmed.publish(queue)
            await inbox.next()
        return n / (loop.time() - start)


class _Window:
    """A consumer with a window of one delivery that is reopened (acked) only when the next
    take begins: the broker pushes only what a take waits for, so every message not yet
    taken stays ready and counted by ``x-max-length``, whoever sends. The window is open
    before the first take, so that delivery may come before anything awaits it: it is kept."""

    def __init__(self, confirmed: _Confirmed, queue: str):
        self.loop = confirmed.loop
        self.channel = confirmed.channel
        self.arrived: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None
        self.taken: int | None = None  # delivery tag of the last take, acked by the next
        self.channel.basic_qos(prefetch_count=1)
        self.channel.basic_consume(queue, self._delivered)

    def _delivered(self, _channel, method, _properties, body) -> None:
        self.taken = method.delivery_tag
        self.arrived.append(body)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> bytes:
        if self.taken is not None and not self.arrived:
            self.channel.basic_ack(self.taken)
        while not self.arrived:
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.arrived.popleft()


async def exact_roundtrip_rate(url: str, n: int) -> float:
    """The roundtrip workload with no layer, keeping capacity exact against senders in other
    processes: publish, hear the confirm, then open the window for the delivery (two broker
    round trips, where the looser floor above overlaps them)."""
    return await _roundtrips(url, n, _Window)


async def pipelined_rate(url: str, n: int) -> float:
    """The pipelined workload with no layer: one task publishes n, each confirmed before the
    next (as a send must be), while another takes the deliveries: messages/s."""
    return await _pipelined(url, n, _Inbox)


async def exact_pipelined_rate(url: str, n: int) -> float:
    """The pipelined workload with no layer, keeping capacity exact against senders in other
    processes: as ``pipelined_rate``, but taken through a window of one reopened by each take."""
    return await _pipelined(url, n, _Window)


async def senders_rate(url: str, n: int, tasks: int = 100) -> float:
    """The senders-100 workload with no layer: ``tasks`` tasks publish n in all, each publish
    confirmed before that task's next, while one task takes the deliveries: messages/s."""
    return await _pipelined(url, n, _Inbox, tasks)


async def exact_senders_rate(url: str, n: int, tasks: int = 100) -> float:
    """As ``senders_rate``, keeping capacity exact: taken through a window of one."""
    return await _pipelined(url, n, _Window, tasks)


async def _pipelined(url: str, n: int, taker, tasks: int = 1) -> float:
    """``tasks`` tasks publish n in all, each publish confirmed before that task's next, while
    another task takes them through ``taker``: messages/s."""
    per_task = max(1, n // tasks)
    async with amqp_queue(url) as (confirmed, queue):
        loop = asyncio.get_running_loop()
        inbox = taker(confirmed, queue)

        async def publish():
            for _ in range(per_task):
                await confirmed.publish(queue)

        async def take():
            for _ in range(per_task * tasks):
                await inbox.next()

        start = loop.time()
        await asyncio.gather(take(), *(publish() for _ in range(tasks)))
        return per_task * tasks / (loop.time() - start)


async def fanout_rate(url: str, members: int, sends: int) -> float:
    """One publish per group send, one copy per member, every copy in one shared queue (as
    a process's channels share one, CAP-4): AMQP routes at most one copy of a publish into
    a queue, so the copies go through one TTL-0 dead-lettering queue per member, the only
    way the broker itself makes them. Deliveries per second, forwarding queues made first."""
    async with amqp_queue(url) as (confirmed, queue):
        loop = asyncio.get_running_loop()
        channel = confirmed.channel
        key = f"floor-{queue}"
        forwarding = {"x-message-ttl": 0, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}
        for i in range(members):
            declared, bound = loop.create_future(), loop.create_future()
            channel.queue_declare(f"{key}-{i}", exclusive=True, arguments=forwarding, callback=declared.set_result)
            await declared
            channel.queue_bind(f"{key}-{i}", "amq.direct", routing_key=key, callback=bound.set_result)
            await bound
        inbox = _Inbox(confirmed, queue)
        start = loop.time()
        confirms = [confirmed.publish(key, exchange="amq.direct") for _ in range(sends)]
        for _ in range(members * sends):
            await inbox.next()
        await asyncio.gather(*confirms)
        return members * sends / (loop.time() - start)


async def copy_fanout_rate(url: str, members: int, sends: int) -> float:
    """One copy per process with no layer: each group send is one publish, confirmed before
    the next, into the process's queue; its one consumer hands the body to every member task
    (to its waiting take, or to its backlog while it is busy), and each member takes every
    copy. No capacity, expiry or decoding: the least a one-copy-per-process layer can do here.
    Deliveries per second, as the fanout workload counts them."""
    async with amqp_queue(url) as (confirmed, queue):
        loop = asyncio.get_running_loop()
        inboxes = [_Backlog(loop) for _ in range(members)]

        def delivered(_channel, _method, _properties, body) -> None:
            for inbox in inboxes:
                inbox.put(body)

        confirmed.channel.basic_consume(queue, delivered, auto_ack=True)
        start = loop.time()
        takers = _taking_every_copy(inboxes, sends)
        for _ in range(sends):
            await confirmed.publish(queue)
        await asyncio.gather(*takers)
        return members * sends / (loop.time() - start)


async def exact_copy_fanout_rate(url: str, members: int, sends: int, late: bool = False) -> float:
    """One copy per process as a layer must take it that keeps capacity exact and group sends in
    order: with each publish goes a basic.get of the process queue (what waits there takes room
    before the copy, CAP-4: the broker counts only what it has not handed out); the copy comes
    from the broker to a consumer, is handed to every member task and acked, and only then does
    the next group send start (the sender's later calls see its copy placed). No capacity
    arithmetic, expiry or decoding. Deliveries per second, as the fanout workload counts them.

    ``late``: the members take their copies one after another once it is placed, as the
    fanout-late workload's receives do, instead of waiting in tasks of their own."""
    async with amqp_queue(url) as (confirmed, queue):  # ``queue``: the process queue, only read
        loop = asyncio.get_running_loop()
        channel = confirmed.channel
        declared = loop.create_future()
        channel.queue_declare("", exclusive=True, arguments=QUEUE_ARGUMENTS, callback=declared.set_result)
        copies = (await declared).method.queue
        inboxes = [_Backlog(loop) for _ in range(members)]
        waits: dict[str, asyncio.Future] = {}

        def delivered(carrier, method, _properties, body) -> None:
            for inbox in inboxes:
                inbox.put(body)
            carrier.basic_ack(method.delivery_tag)
            waits["placed"].set_result(None)

        def got(*_reply) -> None:  # Get-Ok or Get-Empty: the process queue was read
            waits["got"].set_result(None)

        channel.basic_consume(copies, delivered)
        channel.add_callback(got, [pika.spec.Basic.GetEmpty], one_shot=False)
        start = loop.time()
        takers = [] if late else _taking_every_copy(inboxes, sends)
        for _ in range(sends):
            waits["got"], waits["placed"] = loop.create_future(), loop.create_future()
            channel.basic_get(queue, got, auto_ack=True)
            await asyncio.gather(confirmed.publish(copies), waits["got"], waits["placed"])
            if late:
                for inbox in inboxes:
                    await inbox.take()
        await asyncio.gather(*takers)
        return members * sends / (loop.time() - start)


def _taking_every_copy(inboxes: list[_Backlog], sends: int) -> list[asyncio.Future]:
    """A task per member, each taking ``sends`` copies from its inbox (the members of a fan-out)."""
    async def member(inbox: _Backlog) -> None:
        for _ in range(sends):
            await inbox.take()

    return [asyncio.ensure_future(member(inbox)) for inbox in inboxes]


class _Backlog:
    """One member's copies: handed to its waiting take, or kept until it takes again."""

    __slots__ = ("loop", "backlog", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.backlog: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None

    def put(self, body: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(body)
        else:
            self.backlog.append(body)

    async def take(self) -> bytes:
        if self.backlog:
            return self.backlog.popleft()
        self.waiter = self.loop.create_future()
        return await self.waiter
