"""Publisher confirms on a link's publish channel: each publish gets a future resolved by
the broker's ack (accepted), nack (a full queue refused it) or return (no such queue),
matched by delivery tag, and a watchdog so a broker that stops confirming cannot make a
send hang past the layer's ``timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from pika import spec

from .errors import BrokerUnavailable
from .futures import settle

WATCHDOG_SECONDS = 1.0  # how often a link with unconfirmed publishes checks they are not stuck


class PublishOutcome(Enum):
    """What the broker said about one publish."""

    ACCEPTED = "accepted"  # every queue it was routed to took it
    REFUSED = "refused"  # nack: a queue at its x-max-length refused it (reject-publish)
    UNROUTABLE = "unroutable"  # returned: a mandatory publish found no queue


@dataclass(slots=True)
class PendingConfirm:
    """A publish the broker has not confirmed yet."""

    future: asyncio.Future[PublishOutcome]
    mandatory_key: str | None  # routing key of a mandatory publish, matched against returns
    sent_at: float  # monotonic: the watchdog's measure
    returned: bool = False  # the broker returned it; its confirm follows


class Confirms:
    """The unconfirmed publishes of one publish channel, oldest first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float,
                 on_stuck: Callable[[BaseException], None]):
        self._loop = loop
        self._timeout = timeout
        self._on_stuck = on_stuck
        self._next_tag = 0
        self._pending: collections.OrderedDict[int, PendingConfirm] = collections.OrderedDict()
        self._watchdog: asyncio.TimerHandle | None = None

    def expect(self, mandatory_key: str | None) -> asyncio.Future[PublishOutcome]:
        """Note the next publish (call just before sending it); its future gives the outcome."""
        self._next_tag += 1
        future: asyncio.Future[PublishOutcome] = self._loop.create_future()
        self._pending[self._next_tag] = PendingConfirm(future, mandatory_key, time.monotonic())
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(WATCHDOG_SECONDS, self._check_stuck)
        return future

    def on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # A return comes just before the confirm of the same publish: mark the oldest
        # unconfirmed mandatory publish to that queue that is not marked yet.
        for pending in self._pending.values():
            if pending.mandatory_key == method.routing_key and not pending.returned:
                pending.returned = True
                return

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        accepted = isinstance(method, spec.Basic.Ack)
        if method.multiple:
            pending = self._pending
            while pending:
                tag = next(iter(pending))
                if tag > method.delivery_tag:
                    break
                _resolve(pending.pop(tag), accepted)
        else:
            found = self._pending.pop(method.delivery_tag, None)
            if found is not None:
                _resolve(found, accepted)

    def _check_stuck(self) -> None:
        """A broker that stops confirming (blocked by an alarm, a dead peer the heartbeat has
        not noticed yet) must not make send() hang: past ``timeout`` the link gives up."""
        self._watchdog = None
        if not self._pending:
            return
        oldest = next(iter(self._pending.values())).sent_at
        if time.monotonic() - oldest > self._timeout:
            self._on_stuck(BrokerUnavailable(f"RabbitMQ did not confirm a publish within {self._timeout:g} s"))
        else:
            self._watchdog = self._loop.call_later(WATCHDOG_SECONDS, self._check_stuck)

    def fail_all(self, failure: BaseException) -> None:
        """The link is gone: every publish still waiting fails (it may or may not have landed)."""
        pending, self._pending = self._pending, collections.OrderedDict()
        for each in pending.values():
            settle(each.future, exc=failure)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


def _resolve(pending: PendingConfirm, accepted: bool) -> None:
    outcome = (PublishOutcome.UNROUTABLE if pending.returned
               else PublishOutcome.ACCEPTED if accepted else PublishOutcome.REFUSED)
    settle(pending.future, result=outcome)
