"""Redis channel layer, sharded by consistent hashing: ``reference_layers.redis.RedisChannelLayer``.

Modules: layer (the public class), hosts (the ``hosts`` config), hashring (which shard owns
a channel), keys + scripts (storage layout and the Lua that keeps each operation to one
atomic round trip), shard (one shard's connections on one event loop, kept per loop by
core.loops.PerLoop), wire (a multiplexed connection: commands back to back, replies matched in
order; resp is its hiredis-less reader), bells (pub/sub wake-ups for waiting receives),
receiver (waiting for messages without polling or losing any), reconnect (connecting within
``reconnect_timeout``, else ShardUnreachable), memberships (what a layer object added, added
again after a restart lost it), copies (a pop's reply: group copies and messages read ahead),
shelf (the copies an event loop holds for its receives), pops (a pop on the wire), deliveries (a
group_send's entry published to the loop where a receive waits: one hop, no pop), returns (what
a loop holds goes back to Redis when it ends, or to the next loop if Redis is out of reach).
"""

from ..core.errors import ChannelFull, ForeignProcessChannel, LayerConfigError, MessageTooLarge, UnserialisableMessage
from .layer import RedisChannelLayer
from .reconnect import ShardUnreachable

__all__ = ["RedisChannelLayer", "ShardUnreachable", "ChannelFull", "MessageTooLarge", "UnserialisableMessage",
           "LayerConfigError", "ForeignProcessChannel"]
