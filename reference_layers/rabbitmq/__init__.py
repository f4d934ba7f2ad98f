"""RabbitMQ reference channel layer (pika): ``reference_layers.rabbitmq.RabbitMQChannelLayer``.

Modules, each building only on those above it:
- config: the CONFIG keys; names: broker object names; errors: BrokerUnavailable and co.
- futures: ``within`` (a time-limited wait that keeps a cancel) and ``settle``.
- pika_compat: every use of pika's internals, each checked on a named pika version.
- confirms: publisher confirms; link: one AMQP connection on one loop (publish, admin, get).
- flush_answers: how a flush hears that the loops whose consumers it ended dropped what they held;
  presence: the loop's heartbeat (core), else it asks the broker before serving what it parked.
- session: connecting, failover, recovery, queue declarations; one per event loop.
- parked, queue_state, windows, receiving: waiting receives and the consumers that feed them.
- memberships: group memberships, and adding them again to a broker that lost them.
- local_book, own_sends, drain_marks: a layer object's own members per process queue, its
  group_sends they wait for (numbered), and the get each sends ahead of its copy.
- placing: a group copy handed to waiting members or parked for the others, with no I/O.
- process_groups: one group copy per process for its own members, fanned out inside it.
- carried: what a loop that ended held (fanned-out copies), for the layer object's next loop.
- broker_ops: sends, group sends, flush; statistics: ``await layer.statistics()``.
- layer: the public class, which tells each session what to do on connect.

Design choices, and why:
- No thread: each event loop that uses the layer gets its own pika ``AsyncioConnection`` on
  that loop (``asyncio.run`` twice and ``async_to_sync`` each get a fresh one, closed just
  before their loop closes). Futures are resolved straight from pika's callbacks.
- Capacity: ``x-max-length`` + ``x-overflow=reject-publish-dlx`` + publisher confirms matched by
  delivery tag, so the broker refuses the publish whichever process sends (nack ->
  ChannelFull; a returned publish means the queue is gone and is made again).
- Receive: consumers with a window of one delivery each, at most as many open windows per
  queue as receives wait on it (and as its traffic has shown it needs). The broker counts
  only ready messages, so it must push nothing a receive has not asked for: a taken
  delivery stays unacked, keeping its window shut, until
  a receive waits again (a busy receive loop keeps its consumer, no consume/cancel per
  receive); after ``LINGER`` idle the consumers are cancelled. Capacity then holds against
  senders in any process, except for ``p!`` messages parked for a sibling nobody waits on
  (see receiving.py).
- Expiry: per-queue ``x-message-ttl``; a queue unused for expiry + 60 s goes (``x-expires``).
- Groups: one publish per group_send to ``amq.direct`` (routing key ``{prefix}:{group}``).
  A layer object's own ``p!x`` members, added by itself, are fed through one copies queue per
  process, bound once per group, and fanned out inside the process (process_groups.py says
  how capacity stays exact there). Other memberships: one forwarding queue per membership
  (``x-message-ttl=0``, dead-lettered into the member's
  queue). Kept, although dead-lettering costs the broker more per copy than a direct
  binding, because AMQP puts at most one copy of a publish into a queue and ``p!a``, ``p!b``
  share one: only a queue per membership gives each member its own copy, counted (and
  dropped when full) against the shared capacity exactly. It also keeps group expiry on the
  broker (``x-expires`` = group_expiry, renewed by group_add) and lets any process add any
  channel. The queues are transient: a restarted broker, or the surviving node of a cluster,
  no longer has them, so each layer remembers the memberships it added (until discarded or
  expired) and adds them again when it connects to a broker whose registry queue is gone.
- flush(): AMQP cannot list queues, so every declare notes the queue in a registry queue
  (the note expires with the queue); flush reads it and deletes those queues. The broker
  cancels consumers on deleted queues in every process; their owners drop what they held
  parked, answer the flush (it waits for as many answers as the queues had consumers, counted
  as it deletes them, up to 2 s) and consume the queue again once it is made again. Without
  the answers, a process told of the flush through a pipe could serve what it parked before
  reading the broker's cancel (XP-4).
- statistics(): queue message counts (no age: AMQP shows a queue's head only by taking it);
  group copies a full member refused come back to their sender's notice queue through
  ``amq.headers`` (the channel queues' dead-letter exchange), counted when it reads them.
- What stays on the broker after close(): normal channel queues until read or expired, and
  the prefix's registry queue (flush needs it across processes, see above). close() deletes
  this instance's process queues, their memberships' forwarding queues and its notice queue,
  and closes its connections; the layer creates no exchange of its own.
  Process queues are neither exclusive nor auto-delete on purpose: a ``new_channel()`` name
  must keep working, with what was sent to it, from the next event loop (LOOP-1, ASYNC-1:
  ``async_to_sync`` makes a loop, and so a connection, per call), while an exclusive queue
  dies with the connection that declared it and an auto-delete one with its last consumer.
  A process that dies without close() leaves them to ``x-expires``.
"""

from ..core.errors import ChannelFull, ForeignProcessChannel, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .errors import BrokerUnavailable
from .layer import RabbitMQChannelLayer

__all__ = ["RabbitMQChannelLayer", "BrokerUnavailable", "ChannelFull", "LayerConfigError", "ForeignProcessChannel",
           "MessageTooLarge", "UnserialisableMessage"]
