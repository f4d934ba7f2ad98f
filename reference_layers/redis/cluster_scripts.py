"""The Lua scripts in a Redis Cluster: scripts.py's, changed where a cluster needs it.

- Wake-ups use Redis 7's sharded pub/sub (SPUBLISH): a bell rings on the node that holds its
  slot only, where classic PUBLISH would be broadcast to every node of the cluster.
- A group's members live in the group's slot, their queues in theirs: group_send reads the
  members (GROUP_MEMBERS), then pushes with one PUSH_MANY per node holding members, reaching
  keys in several slots of that node (the ``allow-cross-slot-keys`` flag, Redis 7).
"""

from __future__ import annotations

from . import scripts
from .scripts import _COMMON, _PRUNE_GROUP  # the helpers scripts.py's own scripts are built from

_CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"


def _sharded(source: str) -> str:
    changed = source.replace("redis.call('PUBLISH', bell, id)", "redis.call('SPUBLISH', bell, id)")
    if changed == source and "PUBLISH" in source:
        raise RuntimeError("scripts.py rings its bells in a way cluster_scripts.py does not know")
    return changed


SEND = _sharded(scripts.SEND)
POP = _sharded(scripts.POP)
PUSH_BACK = _sharded(scripts.PUSH_BACK)
GROUP_ADD = scripts.GROUP_ADD
GROUP_DISCARD = scripts.GROUP_DISCARD

# KEYS: members, capacities. Drops expired members; returns {member, capacity or '', ...}.
GROUP_MEMBERS = _PRUNE_GROUP + r"""
local t = redis.call('TIME')
prune_group(KEYS[1], KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = member
  out[#out + 1] = redis.call('HGET', KEYS[2], member) or ''
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
