"""Every use of pika's internals (private attributes, undocumented calls) in the layer.

Each shim is an optimisation or a way round a pika behaviour, checked on the pika version its
comment names; each falls back to pika's public API (or to doing nothing) when the internals
it reads are not there, so a newer pika costs speed at worst, never correctness. Check them
again when the pika pin moves.
"""

from __future__ import annotations

import errno
import logging
import weakref
from typing import Any, Callable

import pika.spec


def coalesce_writes(connection: Any) -> None:
    """Send every frame waiting in pika's write buffer with one ``send()``.

    Checked on pika 1.4.4 (the transport's ``_tx_buffers`` list and ``_produce`` method).
    pika buffers each frame as its own chunk and sends the chunks one syscall each: a publish
    is three frames, an ack one more. On a loaded machine each syscall on a socket that
    wakes the broker costs tens of µs, so joining them is the largest single saving on the
    hot path. Only an optimisation: if pika's internals differ, it is left as it is.
    """
    transport: Any = getattr(connection, "_transport", None)
    original = getattr(transport, "_produce", None)
    if original is None or not hasattr(transport, "_tx_buffers"):
        return

    def produce() -> None:
        buffers = transport._tx_buffers  # noqa: SLF001 - pika internals
        if len(buffers) > 1:
            joined = b"".join(buffers)
            buffers.clear()
            buffers.append(joined)
        original()

    transport._produce = produce  # noqa: SLF001 - pika internals


def write_soon(connection: Any, loop: Any) -> Callable[[], None]:
    """Send what pika buffers in a turn at the start of the next one, without a writability watch.
    Returns a call that sends the buffer at once instead (a no-op where this shim is not used).

    Checked on pika 1.4.4 (the plain transport's ``write``, ``_buffer_tx_data``, ``_tx_buffers``,
    ``_produce``, ``_state``, ``_initiate_abort``, ``_on_socket_writable`` and
    ``_nbio.set_writer``). pika turns a write into an epoll watch for writability, then a
    send, then the watch removed again: two epoll_ctl calls per burst,
    each tens of µs on a loaded machine. A socket with room is writable anyway, so the burst is
    sent from a callback instead; only a send the kernel cannot take in full falls back to
    pika's watch. TLS transports, and a pika whose internals differ, are left as they are.
    """
    transport: Any = getattr(connection, "_transport", None)
    if type(transport).__name__ != "_AsyncPlaintextTransport":
        return _nothing
    needed = ("write", "_buffer_tx_data", "_tx_buffers", "_on_socket_writable", "_nbio", "_sock", "_produce",
              "_state", "_STATE_ACTIVE", "_initiate_abort")
    if not all(hasattr(transport, name) for name in needed):
        return _nothing

    def flush() -> None:
        # pika's _on_socket_writable, less its remove_writer for a watch never set (an epoll
        # lookup per burst): send, and only if the kernel took part, watch for room.
        if not transport._tx_buffers or transport._sock is None:  # noqa: SLF001 - pika internals
            return
        if transport._state != transport._STATE_ACTIVE:  # noqa: SLF001
            return
        try:
            transport._produce()  # noqa: SLF001
        except Exception as error:  # noqa: BLE001 - as pika: anything but "try again" aborts
            if not (isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.EWOULDBLOCK)):
                transport._initiate_abort(error)  # noqa: SLF001
                return
        if transport._tx_buffers and transport._sock is not None:  # noqa: SLF001 - the kernel took part
            transport._nbio.set_writer(transport._sock.fileno(), transport._on_socket_writable)  # noqa: SLF001

    def write(data: bytes) -> None:
        was_empty = not transport._tx_buffers  # noqa: SLF001 - pika internals
        transport._buffer_tx_data(data)  # noqa: SLF001 - ignores a write to an inactive transport
        if was_empty and transport._tx_buffers:  # noqa: SLF001
            loop.call_soon(flush)

    transport.write = write
    return flush


def _nothing() -> None:
    """pika writes its buffer itself: nothing to send early."""


def drop_stream(connection: Any) -> None:
    """Close the socket at once, without the AMQP closing handshake.

    Checked on pika 1.4.4 (``BaseConnection._adapter_disconnect_stream``). Used only when a
    polite close failed: pika has no public call that drops an open stream.
    """
    try:
        connection._adapter_disconnect_stream()  # noqa: SLF001 - pika internals
    except Exception:  # noqa: BLE001 - already gone, or pika's internals differ
        pass


def consume_nowait(carrier: Any, queue: str, on_message: Callable[..., None]) -> str:
    """basic.consume with no-wait; returns the consumer tag.

    Checked on pika 1.4.4 (``Channel._send_method``, ``_consumers``, ``_generate_consumer_tag``).
    pika sends one RPC at a time and waits for each reply, so a fan-out starting a consumer per
    waiting receive would pay a round trip per receive. Only an optimisation on pika's
    internals; without them, pika's own basic_consume.
    """
    send = getattr(carrier, "_send_method", None)
    consumers = getattr(carrier, "_consumers", None)
    make_tag = getattr(carrier, "_generate_consumer_tag", None)
    if send is None or not isinstance(consumers, dict) or make_tag is None:
        return str(carrier.basic_consume(queue, on_message))
    tag = str(make_tag())
    consumers[tag] = on_message
    send(pika.spec.Basic.Consume(queue=queue, consumer_tag=tag, nowait=True, arguments={}))
    return tag


def cancel_nowait(carrier: Any, tag: str) -> bool:
    """Send basic.cancel (no-wait) at once, ahead of any ack that follows it.

    Checked on pika 1.4.4 (``Channel._send_method``, ``_consumers``, ``_cancelled``). pika
    would hold a cancel back behind an RPC awaiting its reply while letting acks pass, and it
    runs every cancel callback on the first basic.cancel-ok. False if pika's internals differ
    (the caller then uses pika's basic_cancel).
    """
    send = getattr(carrier, "_send_method", None)
    consumers = getattr(carrier, "_consumers", None)
    cancelled = getattr(carrier, "_cancelled", None)
    if send is None or not isinstance(consumers, dict) or not isinstance(cancelled, set):
        return False
    if tag not in consumers:
        return True  # the broker cancelled it already
    cancelled.add(tag)  # pika now rejects (requeues) deliveries still on their way to it
    del consumers[tag]
    send(pika.spec.Basic.Cancel(consumer_tag=tag, nowait=True))
    return True


class _ExpectedRefusals(logging.Filter):
    """Drops pika's warning of a channel error on one of the layer's admin channels when it is
    an answer the layer asked for and handles: 404 (a passive declare of a queue gone, a
    statistics() read of one) or 406 (a delete "if unused" of a queue in use, in flush())."""

    def __init__(self) -> None:
        super().__init__()
        self.channels: weakref.WeakSet[Any] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and args[0] in (404, 406):
            try:
                return args[2] not in self.channels
            except TypeError:  # not a channel: not ours
                return True
        return True


_EXPECTED_REFUSALS = _ExpectedRefusals()


def quiet_expected_refusals(admin_channel: Any) -> None:
    """Keep the layer's expected refusals on ``admin_channel`` out of the log (link.py raises
    them as BrokerRefused, and the callers that expect them handle them).

    Checked on pika 1.4.4: ``pika.channel`` logs each Channel.Close from the broker
    at WARNING, as ``('Received remote Channel.Close (%s): %r on %s', code, text, channel)``.
    If that changes, the warnings show again: nothing else depends on it.
    """
    logger = logging.getLogger("pika.channel")
    if _EXPECTED_REFUSALS not in logger.filters:
        logger.addFilter(_EXPECTED_REFUSALS)
    _EXPECTED_REFUSALS.channels.add(admin_channel)
