"""Drain-ahead marks: which process queues a group_send took in before its copy came
(process_groups.py), so the copy's fan-out need not take them in again."""

from __future__ import annotations

from dataclasses import dataclass

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
