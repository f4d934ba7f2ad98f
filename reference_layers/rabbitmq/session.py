"""Session: what one event loop holds for a layer — its Link, the queues it declared, its
receives — and how it gets (back) a working connection.

Connecting tries each URL in turn (the nodes of a cluster, or stand-by brokers) until one
answers or the layer's ``timeout`` has passed, then raises BrokerUnavailable: no call hangs.
A node that just failed is tried last. When a connection drops while receives are waiting,
a recovery task reconnects in the background and the receives carry on (receiving.py sets
their consumers up again); if no node comes back within ``timeout`` they raise instead.

A session is told, not asking: what to do on each connect (``on_connect``: the layer restores
its group memberships there) and whom to tell about link events (``events``: the loop's
Receiver). So it imports neither the receive side nor the group side, which build on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import pika

from ..core.statistics import ConnectionState
from .config import BrokerConfig
from .confirms import PublishOutcome
from .dedupe import MessageIds, Seen
from .errors import NOT_FOUND, PRECONDITION_FAILED, BrokerRefused, BrokerUnavailable, safe_url
from .link import Link
from .names import NOTICES_EXCHANGE, BrokerNames

# An unused channel queue lives this long past expiry: nothing in it could still be delivered.
QUEUE_GRACE_SECONDS = 60
REDECLARE_AFTER = QUEUE_GRACE_SECONDS / 3  # senders and receivers renew queues this often
REGISTRY_LIMIT = 100_000
COPIES_LIMIT = 100_000  # a process's group copies queue (process_groups.py)
RETRY_PAUSE = 0.25  # between rounds over every URL while no node answers


@dataclass
class Shared:
    """Layer-wide facts every session uses (and the node cursor they move together)."""
    config: BrokerConfig
    names: BrokerNames
    capacity_for: Callable[[str], int]
    expiry: float
    connection_name: str
    url_index: int = 0
    active_url: str | None = None
    sessions_open: set[Session] = field(default_factory=set)
    ids: MessageIds = field(default_factory=MessageIds)  # every publish's message_id (dedupe.py)
    seen: Seen = field(default_factory=Seen)  # ids let in by this layer object, on any loop


class LinkEvents(Protocol):
    """What a session tells the receive side of its loop (receiving.Receiver)."""

    def on_link(self, link: Link) -> None: ...
    def on_link_lost(self) -> None: ...
    def on_consume_channel(self, link: Link) -> None: ...
    def on_consumer_cancelled(self, tag: str) -> None: ...
    def has_waiters(self) -> bool: ...
    def fail_all(self, exc: BaseException) -> None: ...
    def close(self) -> None: ...


class _NoEvents:
    """Until a receive side is attached: nothing waits, nothing to tell."""

    def on_link(self, link: Link) -> None: ...
    def on_link_lost(self) -> None: ...
    def on_consume_channel(self, link: Link) -> None: ...
    def on_consumer_cancelled(self, tag: str) -> None: ...
    def has_waiters(self) -> bool:
        return False
    def fail_all(self, exc: BaseException) -> None: ...
    def close(self) -> None: ...


OnConnect = Callable[["Session", Link], Awaitable[None]]


@dataclass
class _Declared:
    """A queue declare this connection made (or is making): when, and its outcome."""

    at: float  # monotonic
    done: asyncio.Future[None]


class Session:
    """One event loop's connection to the broker and the queues declared on it."""

    def __init__(self, shared: Shared, loop: asyncio.AbstractEventLoop, on_connect: OnConnect | None = None):
        self.shared = shared
        self.loop = loop
        self.link: Link | None = None
        self.lost_url: str | None = None  # the node whose connection broke, until the next one opens
        self.events: LinkEvents = _NoEvents()
        self._on_connect = on_connect
        self._connecting: asyncio.Task[Link] | None = None
        self._declared: dict[str, _Declared] = {}
        self._registry_declared: asyncio.Future[None] | None = None
        self._recovery: asyncio.Task[None] | None = None

    # --- connection --------------------------------------------------------------------------
    async def get_link(self) -> Link:
        link = self.link
        if link is not None and link.open:
            return link
        # One connect at a time, in a task of its own: a caller cancelled meanwhile (a receive
        # under wait_for) must not abort a handshake other callers are waiting for.
        if self._connecting is None:
            self._connecting = self.loop.create_task(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, task: asyncio.Task[Link]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller went away

    async def _connect(self) -> Link:
        config = self.shared.config
        deadline = time.monotonic() + config.timeout
        last_error: BaseException | None = None
        while True:
            for attempt in range(len(config.urls)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                index = (self.shared.url_index + attempt) % len(config.urls)
                link = Link(self.loop, config, self.shared.connection_name, config.urls[index])
                try:
                    await link.connect(remaining)
                except (Exception, asyncio.TimeoutError) as exc:  # noqa: BLE001 - try the next node
                    # An attempt cut short by the deadline says less than a refusal seen
                    # before it (a bad certificate, a wrong password): keep the refusal.
                    if last_error is None or not isinstance(exc, asyncio.TimeoutError):
                        last_error = exc
                    continue
                self.shared.url_index = index
                self.shared.active_url = config.urls[index]
                self.shared.sessions_open.add(self)
                self._adopt(link)
                if self._on_connect is not None:
                    try:
                        await self._on_connect(self, link)
                    except Exception as exc:  # noqa: BLE001 - not set up again: this link is not usable
                        last_error = exc
                        self.link = None
                        self.shared.sessions_open.discard(self)
                        await link.close()
                        continue
                return link
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                urls = ", ".join(safe_url(url) for url in config.urls)
                raise BrokerUnavailable(f"no RabbitMQ node answered at {urls} within {config.timeout:g} s "
                                        f"(last error: {last_error!r})")
            await asyncio.sleep(min(RETRY_PAUSE, remaining))

    def _adopt(self, link: Link) -> None:
        self.link = link
        self.lost_url = None
        self._declared.clear()
        self._registry_declared = None
        link.on_lost = lambda exc: self._lost(link, exc)
        link.on_consume_channel = lambda: self.events.on_consume_channel(link)
        link.on_consumer_cancelled = self.events.on_consumer_cancelled

    def _lost(self, link: Link, exc: BaseException) -> None:
        if self.link is not link:
            return
        self.link = None
        self.lost_url = link.url
        self.shared.sessions_open.discard(self)
        # The node that failed is tried last next time.
        self.shared.url_index = (self.shared.config.urls.index(link.url) + 1) % len(self.shared.config.urls)
        self.events.on_link_lost()
        if self.events.has_waiters() and self._recovery is None:
            self._recovery = self.loop.create_task(self._recover())

    async def _recover(self) -> None:
        try:
            link = await self.get_link()
        except BrokerUnavailable as exc:
            self.events.fail_all(exc)
            return
        except asyncio.CancelledError:
            return
        finally:
            self._recovery = None
        self.events.on_link(link)

    def connection_states(self) -> dict[str, ConnectionState]:
        """Each configured node (password hidden) and how this loop's connection to it stands."""
        link = self.link
        states = {}
        for url in self.shared.config.urls:
            if link is not None and link.open and link.url == url:
                state = ConnectionState.CONNECTED
            elif url == self.lost_url:
                state = ConnectionState.LOST
            else:
                state = ConnectionState.NOT_CONNECTED
            states[safe_url(url)] = state
        return states

    async def close(self) -> None:
        """Close the connection (the broker requeues unacked deliveries); waiting receives
        on this loop get BrokerUnavailable."""
        for task in (self._recovery, self._connecting):
            if task is not None:
                task.cancel()
        self._recovery = self._connecting = None
        self.events.close()
        link, self.link = self.link, None
        self.lost_url = None
        self.shared.sessions_open.discard(self)
        if link is not None:
            await link.close()

    # --- queues --------------------------------------------------------------------------------
    def queue_arguments(self, channel: str) -> dict[str, Any]:
        ttl_ms = int(self.shared.expiry * 1000)
        return {
            "x-max-length": self.shared.capacity_for(channel),
            # Refused publishes are nacked (ChannelFull) and, like expired messages, dead-lettered
            # to the notices exchange: only group copies are kept there (missed_copies.py).
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": NOTICES_EXCHANGE,
            "x-message-ttl": ttl_ms,
            "x-expires": ttl_ms + QUEUE_GRACE_SECONDS * 1000,
        }

    def copies_arguments(self) -> dict[str, Any]:
        """A process's group copies queue: it expires with the process's channel queues."""
        return {"x-max-length": COPIES_LIMIT, "x-expires": self.queue_arguments("")["x-expires"]}

    def declared_recently(self, queue: str) -> bool:
        """This open connection declared ``queue`` recently, with success: ``ensure_queue``
        would do nothing (checked without a coroutine, on the send's hot path)."""
        link, known = self.link, self._declared.get(queue)
        return (link is not None and link.open and known is not None and known.done.done()
                and not known.done.cancelled() and known.done.exception() is None
                and time.monotonic() - known.at < REDECLARE_AFTER)

    async def ensure_queue(self, queue: str, channel: str, force: bool = False,
                           declare: Callable[[Link], Awaitable[None]] | None = None) -> None:
        """Declare ``queue`` unless this connection did recently (a declare renews x-expires);
        concurrent callers share one declare. ``declare`` replaces the channel queue's declare
        (and registration) for a queue of another kind."""
        link = await self.get_link()
        known = self._declared.get(queue)
        now = time.monotonic()
        if known is not None and not force and now - known.at < REDECLARE_AFTER:
            if not known.done.done():
                try:
                    await asyncio.shield(known.done)
                    return
                except Exception:  # noqa: BLE001 - that declare failed: try it ourselves
                    pass
            elif known.done.exception() is None:
                return
        future: asyncio.Future[None] = self.loop.create_future()
        self._declared[queue] = _Declared(now, future)
        try:
            if declare is not None:
                await declare(link)
            else:
                arguments = self.queue_arguments(channel)
                await self.declare(link, queue, arguments)
                await self.register(link, queue, arguments["x-expires"])
        except BaseException as exc:
            mine = self._declared.get(queue)
            if mine is not None and mine.done is future:
                del self._declared[queue]
            future.set_exception(exc if isinstance(exc, Exception) else BrokerUnavailable("cancelled"))
            future.exception()  # retrieved: concurrent callers re-raise their own
            raise
        future.set_result(None)

    async def delete_queue(self, queue: str) -> None:
        link = await self.get_link()
        try:
            await link.admin("queue_delete", queue)
        except BrokerRefused as exc:
            if exc.reply_code != NOT_FOUND:
                raise
        self.forget(queue)

    def forget(self, queue: str) -> None:
        self._declared.pop(queue, None)

    async def exists(self, link: Link, queue: str) -> bool:
        """Whether ``queue`` is on the broker (a passive declare; a flush may have deleted it)."""
        try:
            await link.admin("queue_declare", queue, passive=True)
        except BrokerRefused as exc:
            if exc.reply_code != NOT_FOUND:
                raise
            return False
        return True

    async def broker_kept_state(self, link: Link) -> bool:
        """Whether the broker kept its state since this layer last set up there: the registry
        queue goes only with the broker's state (a flush never deletes it). Asked once per
        connect, before anything declares the registry again."""
        return await self.exists(link, self.shared.names.registry)

    def forget_all(self) -> None:
        self._declared.clear()

    async def declare(self, link: Link, queue: str, arguments: dict[str, Any]) -> None:
        try:
            await link.admin("queue_declare", queue, durable=False, arguments=arguments)
        except BrokerRefused as exc:
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            # Made by a layer with other capacity/expiry settings: the first one's rules apply.
            await link.admin("queue_declare", queue, passive=True)

    async def register(self, link: Link, queue: str, ttl_ms: int) -> asyncio.Future[PublishOutcome]:
        """Note ``queue`` in the registry flush() reads (AMQP cannot list queues); the note
        lapses with the queue. Returns the note's confirm, which a channel queue's declare
        need not await: flush() only needs the note on the broker before a flush starts, and
        the send that follows the declare is confirmed after it (one publish channel)."""
        await self.ensure_registry(link)
        noted = link.publish("", self.shared.names.registry, queue.encode(),
                             pika.BasicProperties(expiration=str(ttl_ms)))
        noted.add_done_callback(_ignore_outcome)
        return noted

    async def ensure_registry(self, link: Link) -> None:
        """Declare the registry once per connection (a flush elsewhere never deletes it)."""
        if self._registry_declared is None:
            self._registry_declared = declared = self.loop.create_future()
            try:
                await link.admin("queue_declare", self.shared.names.registry, durable=False,
                                 arguments={"x-max-length": REGISTRY_LIMIT})
            except BaseException:
                self._registry_declared = None
                declared.cancel()
                raise
            declared.set_result(None)
        elif not self._registry_declared.done():
            await asyncio.shield(self._registry_declared)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
