"""The Lua scripts in a Redis Cluster: scripts.py's, changed where a cluster needs it.

- Wake-ups use Redis 7's sharded pub/sub (SPUBLISH): a bell rings on the node that holds its
  slot only, where classic PUBLISH would be broadcast to every node of the cluster.
- A group's members live in the group's slot, listed one by one (``P:{g:G}:g`` sorted by
  membership expiry, their capacities in ``P:{g:G}:gc``), their queues and inboxes in theirs.
  group_send runs GROUP_SEND on the group's node, which pushes to the normal channels on that
  node and returns the others, and gathers the ``p!*`` members per process: then one PUSH_MANY
  on each other node holding normal members and one PUSH_COPIES per receiving process (one
  inbox entry for all its members, as group_scripts.py makes on one server), all at once.
  GROUP_SEND and PUSH_MANY reach keys in several slots of their node (the
  ``allow-cross-slot-keys`` flag, Redis 7). The key names are cluster_keys.py's.
"""

from __future__ import annotations

from . import scripts
from .group_scripts import _COPIES  # the inbox entry a group_send makes on one server
from .scripts import _COMMON  # the helpers scripts.py's own scripts are built from

_CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"


def _sharded(source: str, publish: str = "redis.call('PUBLISH', bell, id)") -> str:
    """``source`` with its ``publish`` call made a sharded one (SPUBLISH)."""
    changed = source.replace(publish, publish.replace("'PUBLISH'", "'SPUBLISH'"))
    if changed == source and "PUBLISH" in source:
        raise RuntimeError("scripts.py publishes in a way cluster_scripts.py does not know")
    return changed


SEND = _sharded(scripts.SEND)
POP = _sharded(scripts.POP)
PUSH_BACK = _sharded(scripts.PUSH_BACK)
FLUSHED = _sharded(scripts.FLUSHED, "redis.call('PUBLISH', KEYS[1], epoch)")  # KEYS: a process key's epoch (cluster_flushes.py)

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
# Drops expired members and pushes to the normal channels whose slots this node serves (reached
# undeclared, allowed by the flag; a member of another node is probed by pcall before anything is
# written); gathers the ``p!*`` members per process. Returns {missed (full members), {member,
# capacity, ...} of the normal channels served elsewhere, then per process: its key, capacity,
# members, their local names comma-joined}.
GROUP_SEND = _CROSS_SLOT + _sharded(_COMMON) + _PRUNE_GROUP + r"""
local now = now_ms()
prune_group(KEYS[1], KEYS[2], now)
local prefix, expiry_ms, default = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local missed, elsewhere, rosters, order = 0, {}, {}, {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(member, '!', 1, true)
  if bang then  -- a process's members share its capacity: read for its first member only
    local key = string.sub(member, 1, bang)
    local roster = rosters[key]
    if not roster then
      roster = {tonumber(redis.call('HGET', KEYS[2], member)) or default}
      rosters[key] = roster
      order[#order + 1] = key
    end
    roster[#roster + 1] = string.sub(member, bang + 1)
  else
    local capacity = tonumber(redis.call('HGET', KEYS[2], member)) or default
    local key = '{' .. member .. '}'
    local count = prefix .. key .. ':n'
    local probe = redis.pcall('ZREMRANGEBYSCORE', count, '-inf', now)
    if type(probe) == 'table' and probe.err then
      elsewhere[#elsewhere + 1] = member
      elsewhere[#elsewhere + 1] = capacity
    else
      missed = missed + 1 - push(prefix .. key .. ':q:' .. member, count, prefix .. key .. ':b', now, expiry_ms,
                                 capacity, ARGV[4])
    end
  end
end
local out = {missed, elsewhere}
for _, key in ipairs(order) do
  local roster = rosters[key]
  out[#out + 1] = key
  out[#out + 1] = roster[1]
  out[#out + 1] = #roster - 1
  out[#out + 1] = table.concat(roster, ',', 2)
end
return out
"""

# KEYS: a process key's inbox, count and bell. ARGV: expiry_ms, capacity (less the copies the
# sending loop holds for the key, which count against it), members, their local names
# comma-joined, body. One inbox entry for the members it has room for; returns how many missed it.
PUSH_COPIES = _sharded(_COMMON) + _COPIES + r"""
local members = tonumber(ARGV[3])
return members - push_copies(KEYS[1], KEYS[2], KEYS[3], now_ms(), tonumber(ARGV[1]), tonumber(ARGV[2]),
                             ARGV[4], members, ARGV[5], false, nil)  -- no taker: entries wait in the inbox
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
