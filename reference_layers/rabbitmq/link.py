"""BrokerLink: the one thread that talks to RabbitMQ for a layer instance.

pika connections are not thread-safe and are bound to one I/O loop, while a channel layer is
called from many event loops (``asyncio.run`` twice, ``async_to_sync`` in other threads). So
each layer owns a private thread running a pika ``BlockingConnection``; coroutines hand it
small functions and await the result. The event loops never block and never hold a
connection, so a layer works from any loop, and ``close()`` leaves no task behind on any.

The thread also owns recovery: when the connection drops it tries each URL in turn (the nodes
of a cluster, or stand-by brokers), retries waiting idempotent commands on the new
connection, and fails every call that has waited longer than ``timeout`` with
:class:`BrokerUnavailable`, so nothing hangs forever.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from typing import Any, Callable

import pika
import pika.exceptions as px

from .config import BrokerConfig

log = logging.getLogger(__name__)


def _not_a_full_queue_nack(record: logging.LogRecord) -> bool:
    """pika warns on every nacked publish; for this layer a nack is just ChannelFull."""
    return not record.getMessage().startswith("Message was Nack'ed by broker")


logging.getLogger("pika.adapters.blocking_connection").addFilter(_not_a_full_queue_nack)

# What a lost broker looks like from pika (socket errors surface as several types).
CONNECTION_ERRORS = (px.AMQPConnectionError, px.ConnectionWrongStateError, px.StreamLostError,
                     px.ChannelWrongStateError, ConnectionError, OSError)
PASS_SECONDS = 0.25  # longest the thread sleeps in pika before looking at its command queue


class BrokerUnavailable(ConnectionError):
    """No RabbitMQ node answered within the layer's ``timeout``, or the connection broke
    while a non-repeatable command (a publish) was in flight."""


class _Command:
    __slots__ = ("fn", "future", "deadline", "repeatable")

    def __init__(self, fn, deadline, repeatable):
        self.fn = fn
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.deadline = deadline
        self.repeatable = repeatable


class BrokerLink:
    """Runs commands ``fn(link)`` on a private thread that owns the pika connection."""

    def __init__(self, config: BrokerConfig, connection_name: str):
        self.config = config
        self._connection_name = connection_name
        self._commands: collections.deque[_Command] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped: concurrent.futures.Future | None = None
        self._url_index = 0
        self._down_since: float | None = None
        self._last_error: BaseException | None = None
        self.connection: pika.BlockingConnection | None = None
        self.ops = None  # channel for declares and publishes (publisher confirms on)
        self.generation = 0  # bumped per connection: delivery tags of older ones are void
        # Set by the owner; all run on the link thread.
        self.on_connect: Callable[[BrokerLink], None] = lambda link: None
        self.on_pass: Callable[[], None] = lambda: None
        self.on_down: Callable[[BaseException], None] = lambda exc: None
        self.wants_connection: Callable[[], bool] = lambda: False
        self.active_url: str | None = None

    # --- called from any thread ------------------------------------------------------------
    def call(self, fn: Callable[[BrokerLink], Any], repeatable: bool = True) -> concurrent.futures.Future:
        """Run ``fn(link)`` on the link thread; the future holds its result or exception.

        ``repeatable`` commands are retried on a new connection if the old one broke; others
        (publishes: a repeat could deliver twice) fail with BrokerUnavailable instead.
        """
        command = _Command(fn, time.monotonic() + self.config.timeout, repeatable)
        with self._lock:
            self._ensure_thread()
            self._commands.append(command)
        self._kick()
        return command.future

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the link thread soon; errors are logged (fire and forget)."""
        self.call(lambda link: fn())

    def stop(self) -> concurrent.futures.Future:
        """Close the connection and end the thread; the future resolves when it has ended."""
        with self._lock:
            if self._thread is None:
                done = concurrent.futures.Future()
                done.set_result(None)
                return done
            self._stopping = True
            stopped = self._stopped
        self._kick()
        return stopped

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._stopped = concurrent.futures.Future()
            self._thread = threading.Thread(target=self._run, name=f"rabbitmq-layer {self._connection_name}",
                                            daemon=True)
            self._thread.start()

    def _kick(self) -> None:
        self._wake.set()
        connection = self.connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(_nothing)
            except Exception:  # noqa: BLE001 - closing or closed: the thread is awake anyway
                pass

    # --- the link thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopping:
                if self.connection is None:
                    self._when_disconnected()
                    continue
                try:
                    self._run_commands()
                    # Commands queued while connecting never woke pika: do not sleep on them.
                    self.connection.process_data_events(time_limit=0 if self._commands else PASS_SECONDS)
                    self.on_pass()
                except CONNECTION_ERRORS as exc:
                    self._lost(exc)
                except Exception as exc:  # noqa: BLE001 - a broker surprise must not end the thread
                    log.exception("rabbitmq layer: unexpected error, reconnecting")
                    self._lost(exc)
        finally:
            self._shutdown()

    def _when_disconnected(self) -> None:
        if not (self._commands or self.wants_connection()):
            self._wake.wait(1.0)
            self._wake.clear()
            return
        if self._connect():
            return
        now = time.monotonic()
        self._fail_expired(now)
        if self._down_since is not None and now - self._down_since > self.config.timeout:
            self.on_down(self._unavailable())
            self._down_since = now  # next verdict after another full timeout
        self._wake.wait(0.5)
        self._wake.clear()

    def _connect(self) -> bool:
        urls = self.config.urls
        for attempt in range(len(urls)):
            index = (self._url_index + attempt) % len(urls)
            try:
                connection = pika.BlockingConnection(self._parameters(urls[index]))
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next node
                self._last_error = exc
                continue
            try:
                self.connection = connection
                self.ops = connection.channel()
                self.ops.confirm_delivery()
                self.generation += 1
                self.on_connect(self)
            except CONNECTION_ERRORS as exc:
                self._last_error = exc
                self._drop_connection()
                continue
            self._url_index = index
            self.active_url = urls[index]
            self._down_since = None
            log.info("rabbitmq layer connected to %s", _safe(urls[index]))
            return True
        if self._down_since is None:
            self._down_since = time.monotonic()
        return False

    def _parameters(self, url: str) -> pika.URLParameters:
        parameters = pika.URLParameters(url)
        query = url.partition("?")[2]
        if "heartbeat" not in query:
            parameters.heartbeat = self.config.heartbeat
        if "socket_timeout" not in query:
            parameters.socket_timeout = min(5.0, self.config.timeout)
        if "blocked_connection_timeout" not in query:
            parameters.blocked_connection_timeout = self.config.timeout
        parameters.connection_attempts = 1
        parameters.retry_delay = 0
        parameters.client_properties = {"connection_name": self._connection_name}
        return parameters

    def reopen_ops(self) -> None:
        """A broker error closed the ops channel (404, 406...): open a fresh one."""
        self.ops = self.connection.channel()
        self.ops.confirm_delivery()

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            if not command.future.set_running_or_notify_cancel():
                continue
            try:
                result = command.fn(self)
            except CONNECTION_ERRORS as exc:
                if command.repeatable and time.monotonic() < command.deadline:
                    fresh = _Command(command.fn, command.deadline, True)
                    fresh.future = _Relay(command.future)
                    with self._lock:
                        self._commands.appendleft(fresh)
                else:
                    command.future.set_exception(BrokerUnavailable(
                        f"the connection to RabbitMQ broke during the call ({exc!r}); it may or may not "
                        "have taken effect"))
                raise
            except px.ChannelClosedByBroker as exc:
                self._reopen_after(exc)
                command.future.set_exception(exc)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                command.future.set_exception(exc)
            else:
                command.future.set_result(result)

    def _reopen_after(self, exc) -> None:
        try:
            self.reopen_ops()
        except CONNECTION_ERRORS:
            raise
        log.debug("ops channel reopened after %r", exc)

    def _lost(self, exc: BaseException) -> None:
        log.warning("rabbitmq layer lost its connection to %s: %r", _safe(self.active_url or "?"), exc)
        self._last_error = exc
        self._drop_connection()
        # A node that just failed is tried last: move on to the next URL first.
        self._url_index = (self._url_index + 1) % len(self.config.urls)
        self._down_since = time.monotonic()

    def _drop_connection(self) -> None:
        connection, self.connection, self.ops = self.connection, None, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _fail_expired(self, now: float) -> None:
        with self._lock:
            keep = collections.deque()
            expired = []
            for command in self._commands:
                (expired if now >= command.deadline else keep).append(command)
            self._commands = keep
        for command in expired:
            if not command.future.done() and command.future.set_running_or_notify_cancel():
                command.future.set_exception(self._unavailable())

    def _unavailable(self) -> BrokerUnavailable:
        urls = ", ".join(_safe(url) for url in self.config.urls)
        return BrokerUnavailable(
            f"no RabbitMQ node answered at {urls} within {self.config.timeout:g} s "
            f"(last error: {self._last_error!r})")

    def _shutdown(self) -> None:
        try:
            if self.connection is not None:
                try:
                    self.on_pass()
                    self._run_commands()  # the close command itself, and anything queued before it
                except CONNECTION_ERRORS:
                    pass
            self._drop_connection()
            self.on_down(BrokerUnavailable("the layer was closed while this call waited"))
            with self._lock:
                leftovers, self._commands = list(self._commands), collections.deque()
                stopped = self._stopped
                self._thread = None
            for command in leftovers:
                if command.future.set_running_or_notify_cancel():
                    command.future.set_exception(BrokerUnavailable("the layer was closed"))
        finally:
            stopped.set_result(None)


class _Relay(concurrent.futures.Future):
    """A retried command's future that passes its outcome on to the caller's original one."""

    def __init__(self, target: concurrent.futures.Future):
        super().__init__()
        self._target = target

    def set_running_or_notify_cancel(self):
        super().set_running_or_notify_cancel()
        return not self._target.done()

    def set_result(self, result):
        if not self._target.done():
            self._target.set_result(result)

    def set_exception(self, exception):
        if not self._target.done():
            self._target.set_exception(exception)


def _nothing() -> None:
    """Wakes the link thread out of pika's wait."""


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{tail}"
