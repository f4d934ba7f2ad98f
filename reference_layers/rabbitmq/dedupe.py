"""Message ids, and the record of those already handed over, so nothing is delivered twice.

A dropped connection makes two kinds of duplicate: the broker requeues what this layer took
but had not acked yet (receiving.py says why a taken delivery stays unacked for a while), and
a send whose publisher confirm was lost with the connection is published again on the next
one (broker_ops.py), although the first publish may have landed. So every publish carries a
``message_id`` unique to its layer object (a random prefix and a counter), and each layer
object remembers the last :data:`SEEN_LIMIT` ids it let in, per target (the channel, or the
copies queue of process_groups.py: group copies share their group_send's id); a delivery
whose id is there is acked and dropped.

Both copies of a message must reach the same layer object for this to work: a normal channel
received by several processes may hand a requeued message to another one, which delivers it
again. An id leaves the record when the layer gives its unacked delivery back to the broker
(it will come again, rightly), or after SEEN_LIMIT newer ones.
"""

from __future__ import annotations

import collections
import itertools
import secrets

SEEN_LIMIT = 16_384  # ids remembered per layer object: far more than can be in flight at a drop


class MessageIds:
    """``message_id`` values for one layer object's publishes."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8) + "."
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


class Seen:
    """The (target, message id) pairs this layer object let in, the oldest forgotten first.

    Shared by the object's event loops (a requeued message may come back on another), so
    each step is one C-level OrderedDict call, atomic under the GIL.
    """

    def __init__(self, limit: int = SEEN_LIMIT):
        self._limit = limit
        self._keys: collections.OrderedDict[tuple[str, str], object] = collections.OrderedDict()

    def first_time(self, target: str, message_id: str | None) -> bool:
        """Note the pair; False if it was noted already (a duplicate). No id: always True."""
        if message_id is None:
            return True
        mine = object()
        if self._keys.setdefault((target, message_id), mine) is not mine:  # test-and-set in one call
            return False
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)
        return True

    def has(self, target: str, message_id: str | None) -> bool:
        return message_id is not None and (target, message_id) in self._keys

    def forget(self, target: str, message_id: str | None) -> None:
        """Its delivery went back to the broker unacked: when it comes again, let it in."""
        if message_id is not None:
            self._keys.pop((target, message_id), None)
