"""The Lua scripts: each layer operation is one atomic script, so one round trip per shard.

Storage on a shard, for prefix P, channel C and its capacity key K (C itself, or the
non-local part ``p!`` of a process-specific channel, shared by all ``p!*``):

- ``P:q:C``  list of C's messages, oldest first, each ``<expires_ms>:<id>:<body>``
- ``P:n:K``  sorted set of the ids of K's unexpired messages, scored by expiry: its size is
  what counts against capacity, exactly, across every channel sharing K
- ``P:b:K``  K's message id counter; every push takes the next id and PUBLISHes it on the
  pub/sub channel of the same name (the "bell", see bells.py). A counter made anew starts
  at the server's time in µs, so ids keep growing across a flush or an expired counter
- ``P:g:G``  sorted set of group G's members on this shard, scored by membership expiry
- ``P:gc:G`` hash: each member's capacity, recorded by group_add

All times come from the server's clock (TIME), so clients with skewed clocks agree.
"""

from __future__ import annotations

# Helpers shared by the scripts that push.
_COMMON = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Let key live at least ttl ms more. `fresh`: it was just made (so has no expiry yet).
-- PEXPIRE GT (Redis 7) in one call; older servers compare first.
local function extend(key, ttl, fresh)
  if fresh then redis.call('PEXPIRE', key, ttl)
  elseif redis.REDIS_VERSION_NUM then redis.call('PEXPIRE', key, ttl, 'GT')
  elseif redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

-- The next message id of a bell: its counter, started at the server's time in µs.
local function next_id(bell, now)
  local id = redis.call('INCR', bell)
  if id == 1 then
    id = string.format('%.0f', now * 1000)
    redis.call('SET', bell, id)
    return id, true
  end
  return string.format('%.0f', id), false
end

local function ring(bell, id, ttl, fresh)
  extend(bell, ttl, fresh)
  redis.call('PUBLISH', bell, id)
end

-- Queue one message unless its capacity key holds `capacity` unexpired messages already.
local function push(queue, count, bell, now, expiry_ms, capacity, body)
  redis.call('ZREMRANGEBYSCORE', count, '-inf', now)
  local held = redis.call('ZCARD', count)
  if held >= capacity then return 0 end
  local expires = now + expiry_ms
  local id, fresh_bell = next_id(bell, now)
  redis.call('ZADD', count, expires, id)
  local length = redis.call('RPUSH', queue, string.format('%.0f', expires) .. ':' .. id .. ':' .. body)
  local ttl = expiry_ms + 1000
  extend(queue, ttl, length == 1)
  extend(count, ttl, held == 0)
  ring(bell, id, ttl, fresh_bell)
  return 1
end
"""

# KEYS: queue, count, bell. ARGV: expiry_ms, capacity, body. Returns 1 (queued) or 0 (full).
SEND = _COMMON + r"""
return push(KEYS[1], KEYS[2], KEYS[3], now_ms(), tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
"""

# KEYS: count, bell, queue_1..queue_n. ARGV: how many messages each queue's receivers want.
# Pops up to that many unexpired messages per queue (dropping expired ones on the way) and
# returns {now_ms, last_id, i, entry, i, entry, ...}: the bell's last id, read in the same
# atomic step, so the receiver can tell rings of later pushes from rings it already saw.
POP = _COMMON + r"""
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {now, redis.call('GET', KEYS[2]) or '0'}
for i = 3, #KEYS do
  local wanted = tonumber(ARGV[i - 2])
  while wanted > 0 do
    local entry = redis.call('LPOP', KEYS[i])
    if not entry then break end
    local first = string.find(entry, ':', 1, true)
    if tonumber(string.sub(entry, 1, first - 1)) > now then
      local second = string.find(entry, ':', first + 1, true)
      redis.call('ZREM', KEYS[1], string.sub(entry, first + 1, second - 1))
      out[#out + 1] = i - 2
      out[#out + 1] = entry
      wanted = wanted - 1
    end
  end
end
return out
"""

# KEYS: count, bell, queue. ARGV: ttl_ms, entries oldest first. Puts popped but undelivered
# messages back at the head, in their order, keeping their expiry; wakes the receivers.
PUSH_BACK = _COMMON + r"""
local now = now_ms()
local ttl = tonumber(ARGV[1])
for i = #ARGV, 2, -1 do
  local entry = ARGV[i]
  local first = string.find(entry, ':', 1, true)
  local expires = tonumber(string.sub(entry, 1, first - 1))
  if expires > now then
    local second = string.find(entry, ':', first + 1, true)
    redis.call('LPUSH', KEYS[3], entry)
    redis.call('ZADD', KEYS[1], expires, string.sub(entry, first + 1, second - 1))
  end
end
extend(KEYS[3], ttl, redis.call('PTTL', KEYS[3]) == -1)
extend(KEYS[1], ttl, redis.call('PTTL', KEYS[1]) == -1)
local id, fresh_bell = next_id(KEYS[2], now)
ring(KEYS[2], id, ttl, fresh_bell)
return 1
"""

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
# Pushes to every unexpired member on this shard (their queues live here too); a full
# member silently misses the message. Returns how many members missed it (for statistics()).
GROUP_SEND = _COMMON + _PRUNE_GROUP + r"""
local now = now_ms()
prune_group(KEYS[1], KEYS[2], now)
local prefix, expiry_ms, default = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local missed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(member, '!', 1, true)
  local key = bang and string.sub(member, 1, bang) or member
  local capacity = tonumber(redis.call('HGET', KEYS[2], member)) or default
  missed = missed + 1 - push(prefix .. 'q:' .. member, prefix .. 'n:' .. key, prefix .. 'b:' .. key,
                             now, expiry_ms, capacity, ARGV[4])
end
return missed
"""

# KEYS: queue_1..queue_n. Read only. Returns {now_ms, waiting_1, expires_1, ...}: per queue
# the messages after its expired head (expired ones are dropped by the next pop) and the
# expiry stamp of the oldest of them (0 when none waits).
STATS = _COMMON + r"""
local out = {now_ms()}
for i = 1, #KEYS do
  local length = redis.call('LLEN', KEYS[i])
  local skipped, expires = 0, 0
  while skipped < length do
    local entry = redis.call('LINDEX', KEYS[i], skipped)
    local stamp = tonumber(string.sub(entry, 1, string.find(entry, ':', 1, true) - 1))
    if stamp > out[1] then expires = stamp break end
    skipped = skipped + 1
  end
  out[#out + 1] = length - skipped
  out[#out + 1] = expires
end
return out
"""
