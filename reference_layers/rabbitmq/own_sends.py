"""This object's group_sends that its own members wait for (process_groups.py).

Each such group_send is numbered, and the number travels in its copy's headers beside the
sender's name: the copy's fan-out tells whose group_send it is, and wakes that sender once
the copy is placed here, so the sender's later calls see it placed (the model's order).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from .missed_copies import SENDER_HEADER

SEQUENCE_HEADER = "asgi-group-send"  # sender-unique number: the owner waits for its copy


@dataclass(frozen=True)
class Placement:
    """What a group_send owes this loop's own members: their process queues drained ahead, and
    a future done once its copy was fanned out to them."""

    sequence: int
    queues: list[str]
    placed: asyncio.Future[None]


class OwnSends:
    """The numbered group_sends whose copies this loop has still to place."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sender: str, timeout: float):
        self._loop = loop
        self._sender = sender
        self._timeout = timeout
        self._numbers = itertools.count(1)
        self._expected: dict[int, list[Any]] = {}  # sequence -> [future, copies still to come]

    def begin(self, queues: list[str], headers: dict[str, Any]) -> tuple[dict[str, Any], Placement]:
        """Number a group_send to ``queues``: its publish's headers, and what it waits for."""
        sequence = next(self._numbers)
        future: asyncio.Future[None] = self._loop.create_future()
        self._expected[sequence] = [future, len(queues)]
        return {**headers, SEQUENCE_HEADER: sequence}, Placement(sequence, queues, future)

    def sequence_of(self, headers: dict[str, Any]) -> int | None:
        """The number of a copy of this object's own group_send (None for anyone else's)."""
        if headers.get(SENDER_HEADER) not in (self._sender, self._sender.encode()):
            return None
        sequence = headers.get(SEQUENCE_HEADER)
        return sequence if isinstance(sequence, int) else None

    def done(self, sequence: int | None) -> None:
        """The copy of group_send ``sequence`` was placed (None: not one of this object's): its
        sender wakes once the last of its copies was."""
        if sequence is None:
            return
        expected = self._expected.get(sequence)
        if expected is None:
            return
        expected[1] -= 1
        if expected[1] <= 0:
            del self._expected[sequence]
            if not expected[0].done():
                expected[0].set_result(None)

    async def placed(self, placement: Placement) -> None:
        """Wait for this loop's copies to be fanned out; past the timeout its copy went astray
        (a flush raced it): nothing more to wait for. The future is awaited as it is, with no
        wrapper, so the sender wakes up in the very turn its copy is placed."""
        future = placement.placed
        if future.done():  # placed already, in the read that brought the copy: no timer
            return
        timer = self._loop.call_later(self._timeout, _give_up, future)
        try:
            await future
        finally:
            timer.cancel()

    def close(self) -> None:
        for future, _left in self._expected.values():
            if not future.done():
                future.set_result(None)
        self._expected.clear()


def _give_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
