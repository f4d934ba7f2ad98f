"""The Lua scripts in a Redis Cluster: scripts.py's, changed where a cluster needs it.

- Wake-ups use Redis 7's sharded pub/sub (SPUBLISH): a bell rings on the node that holds its
  slot only, where classic PUBLISH would be broadcast to every node of the cluster.
- A group's members live in the group's slot, listed one by one (``P:{g:G}:g`` sorted by
  membership expiry, their capacities in ``P:{g:G}:gc``; no per-process roster, as a cluster's
  group_send pushes to each member), their queues in theirs: group_send runs GROUP_SEND on the
  group's node, which pushes to the members on that node and returns the others, then one
  PUSH_MANY on each other node holding members; both reach keys in several slots of their node
  (the ``allow-cross-slot-keys`` flag, Redis 7). The key names are cluster_keys.py's.
"""

from __future__ import annotations

from . import scripts
from .scripts import _COMMON  # the helpers scripts.py's own scripts are built from

_CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"


def _sharded(source: str) -> str:
    changed = source.replace("redis.call('PUBLISH', bell, id)", "redis.call('SPUBLISH', bell, id)")
    if changed == source and "PUBLISH" in source:
        raise RuntimeError("scripts.py rings its bells in a way cluster_scripts.py does not know")
    return changed


SEND = _sharded(scripts.SEND)
POP = _sharded(scripts.POP)
PUSH_BACK = _sharded(scripts.PUSH_BACK)

_PRUNE_GROUP = r"""
local function prune_group(members, capacities, now)
  local gone = redis.call('ZRANGEBYSCORE', members, '-inf', now)
  for _, member in ipairs(gone) do redis.call('HDEL', capacities, member) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', members, '-inf', now) end
end
"""

# KEYS: members, capacities. ARGV: channel, group_expiry_ms, capacity.
GROUP_ADD = _COMMON + _PRUNE_GROUP + r"""
local now = now_ms()
prune_group(KEYS[1], KEYS[2], now)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl + 1000)
redis.call('PEXPIRE', KEYS[2], ttl + 1000)
return 1
"""

# KEYS: members, capacities. ARGV: channel.
GROUP_DISCARD = r"""
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: members, capacities. ARGV: key prefix ('P:'), expiry_ms, default capacity, body.
# Drops expired members and pushes to those whose slots this node serves (reached undeclared,
# allowed by the flag; a member of another node is probed by pcall before anything is written);
# returns {missed (full members), member, capacity, ...} of the members served elsewhere.
GROUP_SEND = _CROSS_SLOT + _sharded(_COMMON) + _PRUNE_GROUP + r"""
local now = now_ms()
prune_group(KEYS[1], KEYS[2], now)
local prefix, expiry_ms, default = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {0}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(member, '!', 1, true)
  local key = '{' .. (bang and string.sub(member, 1, bang) or member) .. '}'
  local capacity = tonumber(redis.call('HGET', KEYS[2], member)) or default
  local count = prefix .. key .. ':n'
  local probe = redis.pcall('ZREMRANGEBYSCORE', count, '-inf', now)
  if type(probe) == 'table' and probe.err then
    out[#out + 1] = member
    out[#out + 1] = capacity
  else
    out[1] = out[1] + 1 - push(prefix .. key .. ':q:' .. member, count, prefix .. key .. ':b', now, expiry_ms,
                               capacity, ARGV[4])
  end
end
return out
"""

# KEYS: the first member's queue, count and bell (they route the script to its node).
# ARGV: expiry_ms, body, then queue, count, bell, capacity of each member (the first too).
# Keys of other slots are reached undeclared (allowed by the flag, on this node only): a member
# whose slot this node does not serve is left untouched (probed by pcall before anything is
# written) and returned, for the caller to push on the node serving it now.
# Returns {missed (full members), index of each member not served here, ...}.
PUSH_MANY = _CROSS_SLOT + _sharded(_COMMON) + r"""
local now = now_ms()
local expiry_ms = tonumber(ARGV[1])
local out = {0}
for i = 3, #ARGV, 4 do
  local probe = redis.pcall('ZREMRANGEBYSCORE', ARGV[i + 1], '-inf', now)
  if type(probe) == 'table' and probe.err then
    out[#out + 1] = (i + 1) / 4
  else
    out[1] = out[1] + 1 - push(ARGV[i], ARGV[i + 1], ARGV[i + 2], now, expiry_ms, tonumber(ARGV[i + 3]), ARGV[2])
  end
end
return out
"""

STATS = scripts.STATS
