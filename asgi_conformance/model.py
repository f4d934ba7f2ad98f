"""An executable model of the channel layer spec: what a layer may answer, step by step.

Pure Python and deterministic: no I/O, no event loop, no clock. Message expiry and group
expiry are not modelled; the state machine that uses this model runs for far less time
than any expiry a layer is built with.

:class:`LayerModel` is one exact layer state. The spec leaves one choice open that the
model must follow: when ``group_send`` reaches several process-specific members that share
a non-local part (``p!a``, ``p!b`` count against ``p!``) and only some fit, which of them
get the message. :class:`PossibleStates` therefore keeps every state the spec allows so far
and narrows the set with each answer the real layer gives; an answer no state allows is a
:class:`ModelMismatch`.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

FULL = "full"
OK = "ok"


class ModelMismatch(AssertionError):
    """The layer answered something the spec (as modelled) does not allow."""


def non_local_part(channel: str) -> str:
    """``'p.abc!x'`` -> ``'p.abc!'``; a normal channel is its own part."""
    bang = channel.find("!")
    return channel if bang < 0 else channel[: bang + 1]


class LayerModel:
    """One exact state: FIFO queues per channel, group memberships, a default capacity.

    ``capacity=None`` models a layer without capacity limits. Capacity is counted per
    non-local part: all of ``p!*`` share the room of ``p!``.
    """

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self.queues: dict[str, list[Any]] = {}
        self.groups: dict[str, set[str]] = {}

    def copy(self) -> "LayerModel":
        twin = LayerModel(self.capacity)
        twin.queues = {channel: list(queue) for channel, queue in self.queues.items()}
        twin.groups = {group: set(members) for group, members in self.groups.items()}
        return twin

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LayerModel) and self.capacity == other.capacity
                and self.queues == other.queues and self.groups == other.groups)

    def __repr__(self) -> str:
        return f"LayerModel(capacity={self.capacity}, queues={self.queues}, groups={self.groups})"

    # --- channels --------------------------------------------------------------------------
    def held(self, channel: str) -> int:
        """Messages counting against ``channel``'s capacity (its whole non-local part)."""
        part = non_local_part(channel)
        return sum(len(queue) for name, queue in self.queues.items() if non_local_part(name) == part)

    def room(self, channel: str) -> float:
        if self.capacity is None:
            return float("inf")
        return max(self.capacity - self.held(channel), 0)

    def send(self, channel: str, message: Any) -> str:
        """Queue ``message``: returns OK, or FULL (and changes nothing) if there is no room."""
        if self.room(channel) < 1:
            return FULL
        self.queues.setdefault(channel, []).append(message)
        return OK

    def head(self, channel: str) -> Any | None:
        """The message a receive would return now, or None if it would wait."""
        queue = self.queues.get(channel)
        return queue[0] if queue else None

    def receive(self, channel: str) -> Any | None:
        """Take the oldest message on ``channel``; None if the channel is empty."""
        queue = self.queues.get(channel)
        if not queue:
            return None
        message = queue.pop(0)
        if not queue:
            del self.queues[channel]
        return message

    # --- groups ------------------------------------------------------------------------------
    def group_add(self, group: str, channel: str) -> None:
        self.groups.setdefault(group, set()).add(channel)

    def group_discard(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self.groups[group]

    def group_send_outcomes(self, group: str, message: Any) -> list["LayerModel"]:
        """Every state a group_send may leave: each member gets one copy if it has room.

        Members sharing a non-local part with less room than members: any ``room`` of them
        get the message (the spec does not say in which order a layer tries members).
        """
        members = sorted(self.groups.get(group, ()))
        by_part: dict[str, list[str]] = {}
        for channel in members:
            by_part.setdefault(non_local_part(channel), []).append(channel)
        choices = []
        for part_members in by_part.values():
            room = self.room(part_members[0])
            if room >= len(part_members):
                choices.append([tuple(part_members)])
            else:
                choices.append(list(itertools.combinations(part_members, int(room))))
        outcomes = []
        for picked in itertools.product(*choices):
            state = self.copy()
            for channel in itertools.chain.from_iterable(picked):
                state.queues.setdefault(channel, []).append(message)
            outcomes.append(state)
        return outcomes

    # --- whole layer -----------------------------------------------------------------------
    def flush(self) -> None:
        self.queues.clear()
        self.groups.clear()


class PossibleStates:
    """The layer states the spec allows after the answers seen so far (usually just one)."""

    def __init__(self, capacity: int | None = None):
        self.states = [LayerModel(capacity)]

    def __repr__(self) -> str:
        return " or ".join(map(repr, self.states))

    def _keep(self, states: Iterable[LayerModel], what: str) -> None:
        kept = []
        for state in states:
            if state not in kept:
                kept.append(state)
        if not kept:
            raise ModelMismatch(f"{what}; the model allows no such answer from {self!r}")
        self.states = kept

    def send_outcomes(self, channel: str) -> set[str]:
        """The answers (OK / FULL) a send to ``channel`` may give now."""
        return {FULL if state.room(channel) < 1 else OK for state in self.states}

    def send(self, channel: str, message: Any, answer: str) -> None:
        """Record that a send answered OK or FULL."""
        expected = " or ".join(sorted(self.send_outcomes(channel)))
        kept = []
        for state in self.states:
            twin = state.copy()  # the old states stay intact for the error message
            if twin.send(channel, message) == answer:
                kept.append(twin)
        self._keep(kept, f"send({channel!r}, {message!r}) answered {answer}, expected {expected}")

    def heads(self, channel: str) -> list[Any | None]:
        """What a receive on ``channel`` may return now (None: it waits)."""
        heads: list[Any | None] = []
        for state in self.states:
            head = state.head(channel)
            if head not in heads:
                heads.append(head)
        return heads

    def received(self, channel: str, message: Any | None) -> None:
        """Record that a receive returned ``message`` (None: nothing arrived)."""
        expected = self.heads(channel)
        kept = []
        for state in self.states:
            if state.head(channel) == message:
                twin = state.copy()
                twin.receive(channel)
                kept.append(twin)
        got = "nothing" if message is None else repr(message)
        wanted = " or ".join("nothing" if head is None else repr(head) for head in expected)
        self._keep(kept, f"receive({channel!r}) got {got}, expected {wanted}")

    def group_add(self, group: str, channel: str) -> None:
        for state in self.states:
            state.group_add(group, channel)

    def group_discard(self, group: str, channel: str) -> None:
        for state in self.states:
            state.group_discard(group, channel)

    def group_send(self, group: str, message: Any) -> None:
        outcomes = [outcome for state in self.states for outcome in state.group_send_outcomes(group, message)]
        self._keep(outcomes, f"group_send({group!r})")

    def flush(self) -> None:
        for state in self.states:
            state.flush()
