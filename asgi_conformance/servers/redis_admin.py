"""Redis commands the fault handle sends over a fresh socket of its own, in a few lines of RESP:
the plugin must not need redis-py to test a layer that may use another client, or none."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from .handles import ServerError

ADMIN_TIMEOUT = 10.0  # seconds for one admin command: the server is ours and not paused

# The client types whose connections a dropped-connections fault closes: commands and pub/sub.
# SKIPME (on by default) spares the admin connection that sends the kill.
CLIENT_TYPES = ("normal", "pubsub")


def drop_redis_clients(url: str) -> int:
    """Close every normal and pub/sub client connection of the server at ``url``, keeping its data;
    returns how many were closed."""
    return sum(redis_command(url, "CLIENT", "KILL", "TYPE", kind) for kind in CLIENT_TYPES)


def redis_command(url: str, *command: str) -> int:
    """Send ``command`` (after AUTH, if the URL has a password) and return its integer reply."""
    return _integer(_command(url, command, ADMIN_TIMEOUT), url, command)


def redis_text(url: str, *command: str, timeout: float = ADMIN_TIMEOUT) -> str:
    """Send ``command`` and return its bulk-string reply (``CLUSTER NODES``, ``INFO``)."""
    reply = _command(url, command, timeout)
    if reply == b"$-1":
        return ""
    if not reply.startswith(b"$"):
        raise ServerError(f"{url}: {' '.join(command)} replied {reply[:60]!r}, not a text")
    return reply.partition(b"\r\n")[2].decode(errors="replace")


def _command(url: str, command: Sequence[str], timeout: float) -> bytes:
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname is None:
        raise ServerError(f"{url}: only redis://host:port servers can be sent admin commands")
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=timeout) as sock:
            replies = sock.makefile("rb")
            if parts.password is not None:
                auth = ("AUTH", unquote(parts.username), unquote(parts.password)) if parts.username else \
                    ("AUTH", unquote(parts.password))
                _ask(sock, replies, auth)
            return _ask(sock, replies, command)
    except OSError as exc:
        raise ServerError(f"{url}: {' '.join(command)} failed: {exc}") from None


def _ask(sock: socket.socket, replies: BinaryIO, command: Sequence[str]) -> bytes:
    words = [word.encode() for word in command]
    sock.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in words))
    line = replies.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed before a reply")
    if line.startswith(b"-"):
        raise OSError(line[1:].strip().decode(errors="replace"))
    if line.startswith(b"$") and line != b"$-1\r\n":  # a bulk string: its length, then the text
        body = replies.read(int(line[1:]) + 2)
        if len(body) != int(line[1:]) + 2:
            raise OSError("connection closed in the middle of a reply")
        return line + body[:-2]
    return line.rstrip(b"\r\n")


def _integer(reply: bytes, url: str, command: Sequence[str]) -> int:
    if not reply.startswith(b":"):
        raise ServerError(f"{url}: {' '.join(command)} replied {reply!r}, not a number")
    return int(reply[1:])
