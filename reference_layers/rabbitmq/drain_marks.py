"""Drain-ahead bookkeeping (process_groups.py): the get a group_send sends with its publish,
its copy if that came before the get's reply, and marks of which process queues were taken
in before their copy came, so the copy's fan-out need not take them in again."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .link import Link
from .own_sends import Placement

DRAINED_LIMIT = 1000  # drain-ahead marks kept at most (each used by its copy's fan-out)


@dataclass(frozen=True, slots=True)
class DrainMark:
    """A process queue taken in ahead of the copy of one of this object's group_sends."""

    queue: str
    sequence: int | None


class DrainMarks:
    """The drain-ahead marks whose copies have not come yet, oldest first.

    A mark whose copy never comes (a flush took it) would stay for ever: past DRAINED_LIMIT
    the oldest goes, which costs its copy, should it still come, one basic.get more.
    """

    def __init__(self, limit: int = DRAINED_LIMIT):
        self._limit = limit
        self._marks: dict[DrainMark, None] = {}  # insertion-ordered

    def add(self, mark: DrainMark) -> None:
        self._marks[mark] = None
        if len(self._marks) > self._limit:
            del self._marks[next(iter(self._marks))]

    def take(self, mark: DrainMark) -> bool:
        """True (and the mark gone) if its queue was taken in ahead."""
        return self._marks.pop(mark, False) is None

    def clear(self) -> None:
        self._marks.clear()


@dataclass(frozen=True, slots=True)
class GroupCopy:
    """A group copy delivered to this loop, with what acks it."""

    carrier: Any
    queue: str  # the process queue whose members it feeds
    method: Any
    properties: Any
    body: bytes
    mark: DrainMark  # its drain-ahead mark: its sequence is None unless this object sent it


class AheadGet:
    """A group_send's drain-ahead get, sent with its publish, whose reply is not read yet; and
    that group_send's copy, if it came first."""

    __slots__ = ("link", "first", "placement", "timer", "copy", "started")

    def __init__(self, link: Link, first: asyncio.Future[Any], placement: Placement) -> None:
        self.link, self.first, self.placement = link, first, placement
        self.timer: asyncio.TimerHandle | None = None
        self.copy: GroupCopy | None = None
        self.started = False  # its task began (a task cancelled before it runs never enters its body)
