"""RabbitMQ reference channel layer (pika): ``reference_layers.rabbitmq.RabbitMQChannelLayer``.

Modules: config (CONFIG keys), names (broker object names), link (the thread owning the pika
connection: failover, reconnects, time limits), broker_ops (queues, limits, memberships,
flush), receiving (consumers and hand-over to waiting receives), layer (the public class).

Design choices, and why:
- Capacity: ``x-max-length`` + ``x-overflow=reject-publish`` + publisher confirms, so the
  broker refuses the publish whichever process sends (a nack becomes ChannelFull).
- Expiry: per-queue ``x-message-ttl`` plus a per-message TTL counted from the send() call.
- Groups: one forwarding queue per membership (``x-message-ttl=0``, dead-lettered into the
  member's queue) bound to a direct exchange: one publish per group_send; a full member's
  copy is dropped by the broker; ``x-expires`` = group_expiry ends a membership on the broker
  when no group_add renewed it, even after every process that added it died.
- Process queues (``p!``) are not exclusive: another process's flush() must be able to delete
  them (an exclusive queue refuses that with RESOURCE_LOCKED), and consumers come and go per
  receive (auto-delete would drop the queue between receives). close() deletes them and their
  memberships; a process that dies leaves them to ``x-expires`` (expiry + 60 s unused).
- flush(): AMQP cannot list queues, so every declare notes the queue in a registry queue (the
  note expires with the queue); flush reads it, deletes those queues and the group bindings,
  and tells every instance (a fanout notice) to drop messages it already buffered.
- What stays on the broker: the prefix's two exchanges and registry queue (shared by all its
  processes), and normal channel queues until they are read or expire.
"""

from ..base import ChannelFull, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .layer import RabbitMQChannelLayer
from .link import BrokerUnavailable

__all__ = ["RabbitMQChannelLayer", "BrokerUnavailable", "ChannelFull", "LayerConfigError",
           "MessageTooLarge", "UnserialisableMessage"]
