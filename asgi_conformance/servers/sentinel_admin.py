"""What the Sentinel kind asks its nodes over a fresh socket: any RESP2 reply, read in a few lines.

``redis_admin`` reads integer replies only; a Sentinel set also needs arrays (the master's
address) and bulk strings (``INFO replication``). Still no redis-py: the plugin must not depend
on the client a layer under test may or may not use.
"""

from __future__ import annotations

import socket
from typing import BinaryIO, Union

from .handles import ServerError
from .network import LOOPBACK

ADMIN_TIMEOUT = 5.0  # seconds for one command: every node is ours and not paused

Reply = Union[int, str, None, list["Reply"]]


class ReplyError(ServerError):
    """The node answered with an error reply (``-ERR ...``)."""


def ask(port: int, *command: str) -> Reply:
    """Send ``command`` to the node on loopback ``port`` and return its decoded reply."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=ADMIN_TIMEOUT) as sock:
            words = [word.encode() for word in command]
            sock.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
            return _read(sock.makefile("rb"))
    except OSError as exc:
        raise ServerError(f"port {port}: {' '.join(command)} failed: {exc}") from None


def info_field(port: int, section: str, name: str) -> str | None:
    """One ``name:value`` line of ``INFO section``, or None when the node does not report it."""
    text = ask(port, "INFO", section)
    for line in str(text).splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _line(replies: BinaryIO) -> bytes:
    line = replies.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed before a reply")
    return line[:-2]


def _read(replies: BinaryIO) -> Reply:
    line = _line(replies)
    kind, rest = line[:1], line[1:].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise ReplyError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = replies.read(int(rest) + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        return None if int(rest) < 0 else [_read(replies) for _ in range(int(rest))]
    raise OSError(f"unreadable reply {line[:40]!r}")
