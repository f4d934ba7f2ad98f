"""Which channels' queues the latest pop left empty, with no push heard of since.

A fan-out's members take their copies and at once wait again: every one of them is a new waiter,
and a pop for them finds nothing (what was there, the pop before took). Such a waiter needs no pop
of its own: any later push rings the bell with a newer id, or pokes the receiver (a push of this
process), and that pops. A pop's verdict counts only if nothing was heard between sending it and
reading its reply (the push may have come after the pop ran).
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter

from .copies import PopReply


class EmptiedQueues:
    def __init__(self, read_ahead: int):
        self._read_ahead = read_ahead  # messages a pop takes beyond what was wanted (copies.py)
        self.channels: set[str] = set()  # the emptied queues' channels (read as a set: a waiter asks per receive)
        self._news = 0  # pushes heard of: rings and pokes
        self._news_at_pop = 0
        self._rung_id = 0  # the newest id rung

    def __contains__(self, channel: str) -> bool:
        return channel in self.channels

    def heard(self, message_id: int = -1) -> None:
        """A push was rung (its id), or written by this process, or the bell was lost (-1)."""
        self._news += 1
        self._rung_id = max(self._rung_id, message_id)
        self.channels.clear()

    def rung(self, message_id: int) -> None:
        """A push was rung while a pop was on its way: whether the pop saw it, its last id tells."""
        self._rung_id = max(self._rung_id, message_id)
        self.channels.clear()

    def popping(self) -> None:
        """A pop is sent now."""
        self._news_at_pop = self._news

    def popped(self, wanted: dict[str, int], reply: PopReply) -> None:
        """The pop sent last, for ``wanted``, replied: a queue it took fewer from than it could is empty."""
        if self._news != self._news_at_pop or self._rung_id > reply.last_id:
            self.channels.clear()  # a push came meanwhile, maybe after the pop ran
            return
        taken = Counter(map(itemgetter(0), reply.messages))  # counts copies too: errs towards popping
        taken.update(reply.held_channels())
        for channel, count in wanted.items():
            if taken[channel] < count + self._read_ahead:
                self.channels.add(channel)
            else:
                self.channels.discard(channel)

    def forget(self) -> None:
        """Trust nothing known (a pop failed)."""
        self.channels.clear()
