"""A multiplexed Redis connection: commands go out back to back, replies are matched in order.

Why not redis-py's command path: it takes a pooled connection, a lock and a timeout for every
command, which costs several times what Redis itself spends on one of our scripts. Here a
command is one future, and the commands of one event-loop iteration, from any number of tasks,
go out in one ``transport.write`` at its end (a send syscall costs more than the rest of a
command: pipelining without batching by hand), and replies are parsed by hiredis straight from
``data_received``. redis-py still opens the connection (TLS, unix sockets, AUTH, SELECT, client
name: every ``hosts`` option), then hands the socket over.

A reply always reaches its future, even if the caller stopped waiting: a caller that must not
lose a reply (a pop) keeps the future itself instead of awaiting it under cancellation.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

hiredis: Any
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is optional
    hiredis = None
    from .resp import ReplyReader as _PurePythonReader

    def ReplyReader() -> Any:  # noqa: N802 - a factory standing in for hiredis.Reader
        return _PurePythonReader()
else:
    def ReplyReader() -> Any:  # noqa: N802 - a factory standing in for the pure-Python class
        return hiredis.Reader(replyError=ResponseError)

USES_HIREDIS = hiredis is not None
READONLY = "READONLY"  # the error prefix of a write sent to a replica


class ReadOnlyReplica(RedisConnectionError):
    """The server is a replica now (a master demoted by a failover): this connection is closed,
    the command did not write, and a new connection finds the current master (sentinel.py)."""
_pack_in_c = getattr(hiredis, "pack_command", None)


def pack(*args) -> bytes:
    """One command in RESP: an array of bulk strings (packed in C by hiredis when installed)."""
    if _pack_in_c is not None:
        return _pack_in_c(args)
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


class Wire(asyncio.Protocol):
    """One open connection. ``call(packed)`` returns the future of its reply."""

    def __init__(self, timeout: float | None):
        # Set by connection_made, which asyncio calls before the protocol is handed out.
        self._transport: asyncio.Transport
        self._timeout = timeout  # no reply for this long while one is owed: the server is gone
        self._loop = asyncio.get_running_loop()
        self._pending: deque[asyncio.Future] = deque()
        self._reader = ReplyReader()
        self._heard_at = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.streams = ()
        self._corked: list[bytes] | None = None  # commands of this loop iteration, not yet written
        self.closed = False

    def call(self, packed: bytes, more_follow: bool = False) -> asyncio.Future:
        """``more_follow``: the caller queues more commands in this same step and then calls
        ``write_now`` (a script and the pops behind it leave in one syscall, not two)."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("connection to Redis lost"))
            return future
        idle = not self._pending
        if idle:
            self._heard_at = self._loop.time()
            if self._watchdog is None and self._timeout is not None:
                self._watchdog = self._loop.call_later(self._timeout, self._check)
        self._pending.append(future)
        if self._corked:
            self._corked.append(packed)
        elif idle and self._corked is None and not more_follow:  # a lone command: no need to wait
            self._transport.write(packed)
        else:  # commands of this loop iteration go out together
            self._corked = [packed]
            self._loop.call_soon(self._write)
        return future

    def _write(self) -> None:
        """Write every command of this loop iteration at once: one syscall, not one each."""
        corked, self._corked = self._corked, None
        if corked and not self.closed:  # None: write_now wrote them already
            self._transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    write_now = _write  # what a caller that said ``more_follow`` queued, written at once

    def close(self) -> None:
        if not self.closed:
            self._transport.close()
            self._fail(RedisConnectionError("connection closed by the channel layer"))

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        self._heard_at = self._loop.time()
        pending = self._pending
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # noqa: BLE001 - a protocol error: this socket is unusable
                self._abort(RedisConnectionError(f"unreadable reply from Redis: {exc!r}"))
                return
            if reply is False:
                return
            if not pending:
                self._abort(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            future = pending.popleft()
            if isinstance(reply, ResponseError) and str(reply).startswith(READONLY):
                # Every command behind this one reached the replica too, and wrote nothing.
                demoted = ReadOnlyReplica(f"Redis answered as a replica: {reply}")
                if not future.done():
                    future.set_exception(demoted)
                self._abort(demoted)
                return
            if not future.done():
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc!r}" if exc else
                                        "connection to Redis closed"))

    def eof_received(self):
        return False  # close the transport: a server that stops talking is gone

    # --- failure ----------------------------------------------------------------------------
    def _check(self) -> None:
        self._watchdog = None
        if not self._pending or self.closed:
            return
        timeout = self._timeout
        assert timeout is not None  # the watchdog runs only with a timeout
        silent = self._loop.time() - self._heard_at
        if silent >= timeout:
            self._abort(RedisTimeoutError(f"no reply from Redis for {silent:.1f} s"))
        else:
            self._watchdog = self._loop.call_later(timeout - silent, self._check)

    def _abort(self, error: Exception) -> None:
        self._transport.abort()
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(error)


async def open_wire(pool: ConnectionPool, timeout: float | None) -> Wire:
    """A command connection (see :class:`Wire`)."""
    return await take_over_socket(pool, lambda: Wire(timeout))


async def take_over_socket(pool: ConnectionPool, make_protocol):
    """Connect (and authenticate, select the db...) with redis-py, then hand the socket to
    ``make_protocol()``: redis-py knows every ``hosts`` option, our protocols read the replies."""
    connection = pool.make_connection()
    await connection.connect()
    reader, writer = connection._reader, connection._writer  # noqa: SLF001 - the checked handover from redis-py (see docstring)
    if reader is None or writer is None or len(getattr(reader, "_buffer", b"")):
        connection._close()  # noqa: SLF001 - the checked handover from redis-py (see docstring)
        raise RedisConnectionError("cannot take over the redis-py connection (unexpected redis-py internals)")
    connection._reader = connection._writer = None  # noqa: SLF001 - detached: redis-py will not close it
    transport = writer.transport
    protocol = make_protocol()
    protocol.connection_made(transport)
    protocol.streams = (reader, writer)  # kept: a StreamWriter closes its transport when collected
    transport.set_protocol(protocol)
    if transport.is_closing():
        protocol.closed = True
    return protocol
