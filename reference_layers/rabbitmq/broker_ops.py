"""What the layer asks of the broker: declares, publishes, memberships, flush.

Every function here runs on the link thread (see link.py) with ``link.ops``, a channel in
publisher-confirm mode, so each publish knows whether a queue accepted it.

Layout (all names from names.py):
- one queue per normal channel, one per process (``p!``) shared by its ``p!x`` channels,
  declared with ``x-max-length`` = capacity and ``x-overflow=reject-publish``: the broker
  refuses a publish to a full queue and nacks it, whichever process sent it (capacity holds
  under concurrent senders), and ``x-message-ttl`` = expiry (expired messages leave the head
  of the queue and free room);
- group membership = a forwarding queue per (group, channel), bound to the prefix's direct
  exchange with the group name; its messages expire at once (``x-message-ttl=0``) and are
  dead-lettered into the member's queue, so group_send is one publish for all members, a full
  member silently misses its copy, and ``x-expires`` = group_expiry deletes the membership
  on the broker when no group_add has renewed it, even if every process that added it died.
"""

from __future__ import annotations

import time

import pika
import pika.exceptions as px

from ..base import ChannelFull, is_process_specific
from .names import BrokerNames
from .receiving import CHANNEL_HEADER, FLUSH_NOTICE, SENDER_HEADER

NOT_FOUND, RESOURCE_LOCKED, PRECONDITION_FAILED = 404, 405, 406
# An unused channel queue lives this long past expiry: nothing in it could still be delivered.
QUEUE_GRACE_SECONDS = 60
REDECLARE_AFTER = QUEUE_GRACE_SECONDS / 3  # senders and receivers renew queues this often
REGISTRY_LIMIT = 100_000


class BrokerOps:
    """Broker-side operations of one layer instance; state is per connection generation."""

    def __init__(self, link, names: BrokerNames, capacity_for, expiry: float, group_expiry: float):
        self._link = link
        self._names = names
        self._capacity_for = capacity_for
        self._expiry = expiry
        self._group_expiry = group_expiry
        self._declared: dict[str, float] = {}
        self._generation = None

    def on_connect(self, link) -> None:
        self._declared.clear()
        self._generation = link.generation
        link.ops.exchange_declare(self._names.groups_exchange, "direct", durable=False)
        link.ops.exchange_declare(self._names.control_exchange, "fanout", durable=False)
        link.ops.queue_declare(self._names.registry, durable=False,
                               arguments={"x-max-length": REGISTRY_LIMIT})

    def forget_declarations(self) -> None:
        self._declared.clear()

    # --- channel queues ----------------------------------------------------------------------
    def ensure_queue(self, queue: str, channel: str, force: bool = False) -> None:
        """Declare ``queue`` unless this connection did so recently (renewing its x-expires)."""
        now = time.monotonic()
        if not force and now - self._declared.get(queue, -1e9) < REDECLARE_AFTER:
            return
        ttl_ms = int(self._expiry * 1000)
        arguments = {
            "x-max-length": self._capacity_for(channel),
            "x-overflow": "reject-publish",
            "x-message-ttl": ttl_ms,
            "x-expires": ttl_ms + QUEUE_GRACE_SECONDS * 1000,
        }
        self._declare(queue, arguments)
        self._register(queue, arguments["x-expires"])
        self._declared[queue] = now

    def _declare(self, queue: str, arguments: dict) -> None:
        ops = self._link.ops
        try:
            ops.queue_declare(queue, durable=False, arguments=arguments)
        except px.ChannelClosedByBroker as exc:
            self._link.reopen_ops()
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            # Made by a layer with other capacity/expiry settings: the first one's rules apply.
            self._link.ops.queue_declare(queue, passive=True)

    def _register(self, queue: str, ttl_ms: int) -> None:
        """Note ``queue`` in the registry flush() reads; the note lapses with the queue."""
        self._link.ops.basic_publish("", self._names.registry, queue.encode(),
                                     pika.BasicProperties(expiration=str(ttl_ms)))

    def _expiration(self, called_at: float) -> str:
        """Per-message TTL in ms, counted from when send() was called, not from when the
        link thread got to it (connecting or declaring may have taken part of it)."""
        left = self._expiry - (time.monotonic() - called_at)
        return str(max(1, int(left * 1000)))

    def send(self, channel: str, data: bytes, called_at: float) -> None:
        queue = self._names.queue(channel)
        self.ensure_queue(queue, channel)
        headers = {CHANNEL_HEADER: channel} if is_process_specific(channel) else None
        for attempt in range(3):
            properties = pika.BasicProperties(expiration=self._expiration(called_at), headers=headers)
            try:
                self._link.ops.basic_publish("", queue, data, properties, mandatory=True)
                return
            except px.UnroutableError:  # the queue is gone (flush, restart, x-expires): make it again
                self.ensure_queue(queue, channel, force=True)
            except px.NackError:
                raise ChannelFull(f"channel {channel!r} is full") from None
        raise ChannelFull(f"channel {channel!r} could not be created on the broker")

    def delete_queue(self, queue: str) -> None:
        try:
            self._link.ops.queue_delete(queue)
        except px.ChannelClosedByBroker as exc:
            self._link.reopen_ops()
            if exc.reply_code not in (NOT_FOUND, RESOURCE_LOCKED):
                raise
        self._declared.pop(queue, None)

    # --- groups --------------------------------------------------------------------------------
    def group_add(self, group: str, channel: str) -> None:
        target = self._names.queue(channel)
        self.ensure_queue(target, channel)
        membership = self._names.membership(group, channel)
        arguments = {
            "x-message-ttl": 0,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
            "x-expires": max(1, int(self._group_expiry * 1000)),
        }
        try:
            self._link.ops.queue_declare(membership, durable=False, arguments=arguments)  # renews it
        except px.ChannelClosedByBroker as exc:
            self._link.reopen_ops()
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            self.delete_queue(membership)  # added with another group_expiry: latest add wins
            self._link.ops.queue_declare(membership, durable=False, arguments=arguments)
        self._bind(membership, group)
        self._register(membership, arguments["x-expires"])

    def _bind(self, membership: str, group: str) -> None:
        try:
            self._link.ops.queue_bind(membership, self._names.groups_exchange, routing_key=group)
        except px.ChannelClosedByBroker as exc:
            self._link.reopen_ops()
            if exc.reply_code != NOT_FOUND:
                raise
            self._link.ops.exchange_declare(self._names.groups_exchange, "direct", durable=False)
            self._link.ops.queue_bind(membership, self._names.groups_exchange, routing_key=group)

    def group_discard(self, group: str, channel: str) -> None:
        self.delete_queue(self._names.membership(group, channel))

    def group_send(self, group: str, data: bytes, called_at: float) -> None:
        for attempt in range(2):
            properties = pika.BasicProperties(expiration=self._expiration(called_at))
            try:
                self._link.ops.basic_publish(self._names.groups_exchange, group, data, properties)
                return
            except px.NackError:
                return  # a member's queue refused its copy: a full member misses it (CAP-5)
            except px.ChannelClosedByBroker as exc:  # exchange deleted by a flush elsewhere
                self._link.reopen_ops()
                if exc.reply_code != NOT_FOUND:
                    raise
                self._link.ops.exchange_declare(self._names.groups_exchange, "direct", durable=False)

    # --- whole prefix --------------------------------------------------------------------------
    def flush(self, sender_id: str) -> None:
        """Delete every queue and membership of this prefix, as every process sees them, and
        tell every instance to drop what it had already taken from those queues."""
        ops = self._link.ops
        try:
            ops.exchange_delete(self._names.groups_exchange)
        except px.ChannelClosedByBroker:
            self._link.reopen_ops()
        self._link.ops.exchange_declare(self._names.groups_exchange, "direct", durable=False)
        names = set()
        while True:
            method, _, body = self._link.ops.basic_get(self._names.registry, auto_ack=True)
            if method is None:
                break
            names.add(body.decode())
        for name in sorted(names):
            self.delete_queue(name)
        self._declared.clear()
        self._link.ops.basic_publish(self._names.control_exchange, "", FLUSH_NOTICE,
                                     pika.BasicProperties(headers={SENDER_HEADER: sender_id}))
