"""Channel and group name rules, and the process-specific names ``new_channel`` hands out.

Every send and receive checks its channel name, so a name that passed once is remembered and
the next check is a set lookup instead of a regex.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from typing import Any

MAX_NAME_LENGTH = 99
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9\-_.]+(![A-Za-z0-9\-_.]*)?\Z")
_GROUP_NAME = re.compile(r"[A-Za-z0-9\-_.]+\Z")
_VALID_CHANNELS: set[str] = set()  # names that passed (every send and receive checks its name)


def check_channel_name(name: Any) -> str:
    """Return ``name`` if it is a valid channel name, else raise TypeError saying why."""
    if type(name) is str and name in _VALID_CHANNELS:  # checked before: a set lookup, no regex
        return name
    if not isinstance(name, str):
        raise TypeError(f"channel name must be a str, not {type(name).__name__}: {name!r}")
    if not 0 < len(name) <= MAX_NAME_LENGTH or not _CHANNEL_NAME.match(name):
        raise TypeError(
            f"invalid channel name {name!r}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits, "
            "'-', '_', '.' and at most one '!'")
    if type(name) is str:
        if len(_VALID_CHANNELS) >= 10_000:
            _VALID_CHANNELS.clear()
        _VALID_CHANNELS.add(name)
    return name


class CheckedChannels(dict[str, str]):
    """Channels a receive of one layer object checked (a valid name, made by this object if
    process-specific), each with what the layer found for it (its capacity key, its queue): a
    fan-out's members call receive() again and again, and the next call skips the checks. Up
    to 10,000, then all forgotten at once."""

    def remember(self, channel: str, found: str) -> None:
        if len(self) >= 10_000:
            self.clear()
        self[channel] = found


def check_group_name(name: Any) -> str:
    """Return ``name`` if it is a valid group name, else raise TypeError saying why."""
    if not isinstance(name, str):
        raise TypeError(f"group name must be a str, not {type(name).__name__}: {name!r}")
    if not 0 < len(name) <= MAX_NAME_LENGTH or not _GROUP_NAME.match(name):
        raise TypeError(
            f"invalid group name {name!r}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits, '-', '_', '.'")
    return name


def non_local_name(channel: str) -> str:
    """``'p.abc!x'`` -> ``'p.abc!'``: the part all of one process's channels share."""
    bang = channel.find("!")
    return channel if bang < 0 else channel[: bang + 1]


def is_process_specific(channel: str) -> bool:
    """True for a ``new_channel`` name (it has a '!'): one process receives on it."""
    return "!" in channel


class ChannelNamer:
    """Makes process-specific channel names that never repeat, in any process.

    The client prefix comes from ``secrets`` (the OS's randomness), so ``random.seed()`` in user
    code cannot make two namers share it. The local part after the ``!`` is a count in hex,
    short on purpose: a group's members of one process travel as a list of their local names on
    every group_send (Redis rosters), and a count is a quarter of the bytes of a random token. A
    forked child has the parent's namer, so from its first name on it puts a random tag of its
    own before the count.
    """

    def __init__(self) -> None:
        self.client_prefix = secrets.token_hex(8)
        self._count = itertools.count(1)
        self._pid = os.getpid()
        self._tag = ""  # before the count: empty in the process that made this namer

    @property
    def client_prefix(self) -> str:
        return self._client_prefix

    @client_prefix.setter
    def client_prefix(self, prefix: str) -> None:
        self._client_prefix = prefix
        self._ending = "." + prefix  # how the part before '!' of our names ends

    def made(self, channel: str) -> bool:
        """True unless ``channel`` is process-specific with another namer's client prefix.
        (Every receive asks: no string is made for the answer.)"""
        bang = channel.find("!")
        return bang < 0 or channel.endswith(self._ending, 0, bang)

    def local_tag(self) -> bytes | None:
        """What the local names this very process made start with: b"" in the process that made
        this namer (its names have no '-'), a forked child's own tag once it made a name, None
        before (the names it shares a ``p!`` part with are its parent's)."""
        if os.getpid() != self._pid:
            return None
        return self._tag.encode()

    def new_channel(self, prefix: str = "specific") -> str:
        if not isinstance(prefix, str) or not _GROUP_NAME.match(prefix):
            raise TypeError(f"new_channel prefix must be a valid name without '!', got {prefix!r}")
        if os.getpid() != self._pid:  # a forked child: its counts repeat the parent's
            self._pid, self._tag = os.getpid(), secrets.token_hex(4) + "-"
        name = f"{prefix}.{self.client_prefix}!{self._tag}{next(self._count):x}"
        return check_channel_name(name)
