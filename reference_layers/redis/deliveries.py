"""Deliveries: a group_send's inbox entry handed to the receiving loop in one hop, not two.

A group_send to a process's members queues one inbox entry (copies.py) and rings the key's bell;
the loop that hears the ring pops the inbox: two hops, the second a round trip of its own, which
across processes was most of what a late fan-out waited for. So a loop where a receive of a
process key waits subscribes to the key's taker channel (``P:d:K``), and GROUP_SEND publishes the
entry there instead of queueing it when nothing older of the key waits on the server (no message
counted, an empty inbox: so no member's queue holds an older message the copy must not overtake)
and a loop listens (PUBLISH says how many heard it); else it queues and rings, as before.

A delivery carries the server's time, the shard's flush epoch and the entry (group_scripts.py).
The loop reads it as the pop of that entry would have been read (copies.read_delivery), holds its
copies on the shelf and wakes its receiver. Like a pop's copies, they are not counted on the
server: the loop counts what it holds, so its own sends see exact room. What bounds a loop that
stops reading its socket is its credit (``DELIVERY_CREDIT`` entries, ``P:dc:K``): GROUP_SEND
spends one per entry it publishes, and queues in the inbox, counted, once it is spent. The loop
renews it (deletes the count: none is a whole credit) when it subscribes and after every half of it
read, written unawaited on its command connection: no reply to wait for, and no write on most
deliveries (before the credit, each delivery was counted, and the loop uncounted it at once: a
command and its reply per delivery). A pop's reply travels on the other connection and may come
after the delivery of a later entry: the shelf keeps each channel's copies in id order (shelf.py).

One loop per layer object takes a key's deliveries (``Claims``): two would each get a copy. A loop
takes them while a receive of the key waits there, and ``LINGER`` seconds after (a consumer that
receives one message after another keeps them coming), so copies do not pile up on a loop that no
longer receives; leaving, it holds what came until the server confirmed. Only loops whose end the
layer hears of in time take (core/loops.py): a loop that ends leaves first, and its shelf goes back
to Redis (returns.py). A subscription lost with its connection takes nothing more (group_sends
queue again); like a pop's reply, a delivery on its way when the connection drops is lost with it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Callable, Iterable

from ..core.loops import closes_states_first
from ..core.names import is_process_specific
from .copies import read_delivery
from .group_scripts import DELIVERY_CREDIT
from .shard import ShardClient
from .shelf import CopyShelf

if TYPE_CHECKING:
    from .cluster import ClusterShard
    from .receiver import Receiver

LINGER = 1.0  # seconds a loop takes a key's deliveries after the last receive of it waited there


class Claims:
    """Which event loop takes each process key's deliveries, for one layer object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # loops run in threads of their own
        self._holders: dict[str, asyncio.AbstractEventLoop] = {}

    def claim(self, capacity_key: str, loop: asyncio.AbstractEventLoop) -> bool:
        with self._lock:
            holder = self._holders.get(capacity_key)
            if holder is not None and holder is not loop and not holder.is_closed():
                return False
            self._holders[capacity_key] = loop
            return True

    def release(self, capacity_key: str, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._holders.get(capacity_key) is loop:
                del self._holders[capacity_key]


class Taker:
    """One loop's deliveries of one process key: subscribed while wanted (``wanted``/``idle``),
    one step at a time by one task. ``receiver``: the key's receiver on this loop, if one waits
    and may be handed copies now (else they are held, and it is told)."""

    def __init__(self, shard: ShardClient, capacity_key: str, shelf: CopyShelf, claims: Claims,
                 receiver: Callable[[], Receiver | None]):
        self._shard = shard
        self._key = capacity_key
        self._channel = shard.keys.taker(capacity_key).encode()
        self._shelf = shelf
        self._claims = claims
        self._receiver = receiver
        self._loop = asyncio.get_running_loop()
        self._want = False  # a receive waits here, or did less than LINGER ago
        self.subscribed = False  # as far as the last confirmation or loss says
        self._losses = 0  # subscriptions lost with their connection so far
        self._linger: asyncio.TimerHandle | None = None
        self._steps: asyncio.Task | None = None  # subscribing or leaving, while one is under way
        self._asked = False  # a subscribe was sent once
        self._read = 0  # entries delivered since the credit was last renewed
        shard.bells.take(self._channel, self._delivered)

    def wanted(self) -> None:
        """A receive of the key waits on this loop: take its deliveries (if no other loop does)."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._want = True
        self._step_soon()  # also after a subscription lost with its connection

    def idle(self) -> None:
        """No receive of the key waits here now: stop taking in LINGER seconds, unless one comes."""
        if self._want and self._linger is None:
            self._linger = self._loop.call_later(LINGER, self._linger_over)

    async def close(self) -> None:
        """The loop ends: leave (what comes until the server confirms is held), then listen no more.
        Left whatever the last step said: a subscribe cancelled on its way (the loop's tasks are
        cancelled before it closes) may have reached the server."""
        if self._linger is not None:
            self._linger.cancel()
        self._want = False
        if self._steps is not None:
            await asyncio.gather(self._steps, return_exceptions=True)
        if self._asked:
            await self._shard.bells.leave(self._channel)
            self.subscribed = False
        self._claims.release(self._key, self._loop)
        self._shard.bells.stop_taking(self._channel)

    # --- plumbing ---------------------------------------------------------------------------
    def _linger_over(self) -> None:
        self._linger = None
        self._want = False
        self._step_soon()

    def _step_soon(self) -> None:
        if self._steps is None and self._want != self.subscribed:
            self._steps = self._loop.create_task(self._step(), name=f"deliveries {self._key}")

    async def _step(self) -> None:
        """Subscribe or leave until that is what is wanted (a receive may come or go meanwhile)."""
        try:
            while self._want != self.subscribed:
                if self._want:
                    if not self._claims.claim(self._key, self._loop):
                        return  # another loop of this object takes them: group_sends queue for this one
                    losses = self._losses
                    self._asked = True
                    try:
                        await self._shard.bells.subscribe(self._channel)
                    except Exception:  # noqa: BLE001 - not subscribed (the next receive tries again)
                        self._claims.release(self._key, self._loop)
                        return
                    self.subscribed = self._losses == losses
                    if not self.subscribed:
                        self._claims.release(self._key, self._loop)
                        return
                    self._read = 0  # a credit left by an earlier subscription may be spent
                    self._shard.renew_credit(self._key)
                else:
                    await self._shard.bells.leave(self._channel)
                    self.subscribed = False
                    self._claims.release(self._key, self._loop)
        finally:
            self._steps = None

    def _delivered(self, payload: bytes | None) -> None:
        if payload is None:  # the subscription went with its connection: nothing more comes
            self._losses += 1
            self.subscribed = False
            if self._steps is None:
                self._claims.release(self._key, self._loop)
            return
        flushes = self._shard.flushes_for(self._key)
        receiver = self._receiver()
        wanted = receiver.wanted_now() if receiver is not None else None
        reply = read_delivery(payload, self._key, self._loop.time(), self._shelf.channels_held, wanted)
        self._read += 1
        if self._read >= DELIVERY_CREDIT // 2:  # long before it is spent, while entries flow
            self._read = 0
            self._shard.renew_credit(self._key)
        if not flushes.admits(reply.epoch):  # a flush came after the group_send: dropped
            return
        self._shelf.put(reply.held, flushes.current_at)
        if receiver is not None:
            if reply.messages:
                receiver.hand_delivered(reply.messages)
            else:
                receiver.look_at_shelf()


class Takers:
    """One loop's Takers: one per process key a receive waited on there (of a ShardClient)."""

    def __init__(self, shard_of: Callable[[str], ShardClient | ClusterShard], shelf: CopyShelf, claims: Claims,
                 receivers: dict[str, Receiver], taking: set[str]):
        self._shard_of = shard_of
        self._shelf = shelf
        self._claims = claims
        self._receivers = receivers
        self._taking = taking  # keys a receive pops from itself (its reply may be older than a delivery)
        self._takers: dict[str, Taker] = {}

    def wanted(self, capacity_key: str) -> None:
        """A receiver of ``capacity_key`` starts waiting on this loop."""
        taker = self._takers.get(capacity_key)
        if taker is None:
            shard = self._shard_of(capacity_key)
            if not (isinstance(shard, ShardClient) and is_process_specific(capacity_key)
                    and closes_states_first(asyncio.get_running_loop())):
                return
            taker = self._takers[capacity_key] = Taker(shard, capacity_key, self._shelf, self._claims,
                                                       lambda: self._receiver(capacity_key))
        taker.wanted()

    def idle(self, capacity_key: str) -> None:
        """The receiver of ``capacity_key`` on this loop ended: nobody waits."""
        taker = self._takers.get(capacity_key)
        if taker is not None:
            taker.idle()

    @property
    def keys(self) -> Iterable[str]:
        """The process keys this loop takes (or may take) the deliveries of: its own group_sends pop
        them behind their script instead (layer.py)."""
        return self._takers.keys()

    async def close(self) -> None:
        await asyncio.gather(*(taker.close() for taker in self._takers.values()), return_exceptions=True)

    def _receiver(self, capacity_key: str) -> Receiver | None:
        return None if capacity_key in self._taking else self._receivers.get(capacity_key)
