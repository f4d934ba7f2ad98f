"""The Lua scripts of groups: memberships kept per process, and group_send as one script.

Storage on a shard, for prefix P and group G (messages and inboxes as scripts.py describes):

- ``P:g:G``  sorted set of group G's entries on this shard: its normal channels, each scored by
  its membership's expiry, and the processes ``p!`` with members in G, each scored by the latest
  expiry of its members
- ``P:gc:G`` hash: each entry's capacity, recorded by group_add
- ``P:gm:G:p!`` sorted set of process ``p!``'s members of G by their local names (``x`` for
  ``p!x``, the part after the ``!``), scored by membership expiry, and ``P:gn:G:p!`` their roster:
  those names, comma-joined, so a group_send makes a process's inbox entry without a step per
  member (local names: less than half the bytes of whole ones, for the server to copy and for
  the process to read). The roster is a cache of the sorted set: group_add appends to
  it, while a discard or an expiry deletes it, and the next group_send writes it anew (so a
  discard costs no more in a large group than in a small one)

A process's members are listed in its roster so that a group_send makes the process's inbox
entry (scripts.py's ``P:i:K``) from one string: its work on the server grows with the receiving
processes, not with their members. Members an older version listed in ``P:g:G`` one by one
(``p!x``) are still reached, gathered per process, and a group_add moves such a member into its
process's roster. (Before the local names, ``P:gp:G:p!`` and ``P:gr:G:p!`` held whole names: an
older version's keys are not read, see CHANGELOG.md.)
"""

from __future__ import annotations

from .scripts import _COMMON

# Entries GROUP_SEND may publish to a process's receiving loop (its taker channel) before that loop
# says it read them (deliveries.py, by deleting the count: none is this many). Its copies are not
# counted on the server (the loop reads them at once, and counts what it holds itself): the credit
# is what bounds a loop that stops reading its socket. Past it, entries queue in the inbox, counted.
DELIVERY_CREDIT = 16
_CREDIT_TTL_MS = 3_600_000  # a count left behind by a process that ended goes within the hour

_COPIES = r"""
-- One inbox entry for the first members of a process that its capacity has room for, its n
-- copies counted together by the entry; `roster`: the process's `members` local names, comma-joined.
-- `taker`: {the channel the process's receiving loop takes entries on (deliveries.py), its credit
-- key}, and `epoch` the shard's flush epoch; when nothing older of the process waits here (no
-- message, no copy counted: so no unexpired entry in the inbox), a loop takes and its credit is not
-- spent, the entry is published to it there instead of queued, and not counted here: the loop
-- counts what it holds. (`taker` false: the inbox, always.) Returns how many members got a copy.
local function push_copies(inbox, count, bell, now, expiry_ms, capacity, roster, members, body, taker, epoch)
  local singles = redis.call('ZCARD', count)
  if singles > 0 then
    redis.call('ZREMRANGEBYSCORE', count, '-inf', now)
    singles = redis.call('ZCARD', count)
  end
  local copies = copies_held(count, now)
  local n = math.min(capacity - singles - copies, members)
  if n <= 0 then return 0 end
  if n < members then  -- the first n names
    local comma = 0
    for _ = 1, n do comma = string.find(roster, ',', comma + 1, true) end
    roster = string.sub(roster, 1, comma - 1)
  end
  local expires = now + expiry_ms
  local first, last, fresh_bell = next_ids(bell, now, n)
  first = string.format('%.0f', first)
  local ttl = expiry_ms + 1000
  local head = string.format('%.0f', expires) .. ':' .. first .. '+' .. n .. ':'
  if taker and singles == 0 and copies == 0 then
    local credit = redis.call('GET', taker[2])
    if not credit or tonumber(credit) > 0 then
      redis.set_repl(redis.REPL_NONE)  -- a replica's subscriber (a demoted master's) would take it too
      -- (a roster is long: it is copied into one string only)
      local taken = redis.call('PUBLISH', taker[1], now .. ':' .. epoch .. ':' .. head .. roster .. ':' .. body)
      redis.set_repl(redis.REPL_ALL)
      if taken > 0 then
        if credit then redis.call('DECR', taker[2])
        else redis.call('SET', taker[2], """ + str(DELIVERY_CREDIT - 1) + """, 'PX', """ + str(_CREDIT_TTL_MS) + r""") end
        extend(bell, ttl, fresh_bell)  -- its ids go on from the last one taken
        return n
      end
    end
  end
  redis.call('ZADD', count .. '|g', expires, first .. '+' .. n)
  extend(count .. '|g', ttl, copies == 0)
  if copies == 0 then
    redis.call('SET', count .. '|t', n, 'PX', ttl)
  else
    redis.call('INCRBY', count .. '|t', n)
    extend(count .. '|t', ttl, false)
  end
  local length = redis.call('RPUSH', inbox, head .. roster .. ':' .. body)
  extend(inbox, ttl, length == 1)
  ring(bell, string.format('%.0f', last), ttl, fresh_bell)
  return n
end
"""

_PRUNE_GROUP = r"""
-- A process's members in a group and their roster: drops the expired ones (and the roster with
-- them, out of date). Returns how many are left.
local function prune_process(members, roster, now)
  local oldest = redis.call('ZRANGE', members, 0, 0, 'WITHSCORES')
  if oldest[2] ~= nil and tonumber(oldest[2]) <= now then
    redis.call('ZREMRANGEBYSCORE', members, '-inf', now)
    redis.call('DEL', roster)
  end
  return redis.call('ZCARD', members)
end

-- The roster of a process's members (their local names, comma-joined), written anew if a discard or an
-- expiry deleted it.
local function roster_of(members, roster)
  local names = redis.call('GET', roster)
  if names then return names end
  names = table.concat(redis.call('ZRANGE', members, 0, -1), ',')
  local ttl = redis.call('PTTL', members)
  if ttl > 0 then redis.call('SET', roster, names, 'PX', ttl) else redis.call('SET', roster, names) end
  return names
end

-- Drops the group's expired entries: normal channels, and processes whose members all expired.
local function prune_group(group, capacities, stems, now)
  local gone = redis.call('ZRANGEBYSCORE', group, '-inf', now)
  for _, entry in ipairs(gone) do
    redis.call('HDEL', capacities, entry)
    if string.sub(entry, -1) == '!' then redis.call('DEL', stems[1] .. entry, stems[2] .. entry) end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', group, '-inf', now) end
end

local function outlive(key, ttl)
  extend(key, ttl, redis.call('PTTL', key) == -1)
end
"""

# KEYS: group, capacities, and for a process-specific channel its process's members and roster.
# ARGV: channel, group_expiry_ms, capacity, members stem, roster stem, the channel's process key
# ('' for a normal channel).
GROUP_ADD = _COMMON + _PRUNE_GROUP + r"""
local now = now_ms()
prune_group(KEYS[1], KEYS[2], {ARGV[4], ARGV[5]}, now)
local channel, ttl, key = ARGV[1], tonumber(ARGV[2]), ARGV[6]
local expires = now + ttl
if key == '' then
  redis.call('ZADD', KEYS[1], expires, channel)
  redis.call('HSET', KEYS[2], channel, ARGV[3])
else
  redis.call('ZREM', KEYS[1], channel)  -- listed by an older version itself: listed once, below
  redis.call('HDEL', KEYS[2], channel)
  prune_process(KEYS[3], KEYS[4], now)
  local name = string.sub(channel, #key + 1)
  if redis.call('ZADD', KEYS[3], expires, name) == 1 then  -- new: on the roster too, if there is one
    if redis.call('ZCARD', KEYS[3]) == 1 then
      redis.call('SET', KEYS[4], name)
    elseif redis.call('EXISTS', KEYS[4]) == 1 then
      redis.call('APPEND', KEYS[4], ',' .. name)
    end
  end
  local listed = redis.call('ZSCORE', KEYS[1], key)
  if not listed or tonumber(listed) < expires then redis.call('ZADD', KEYS[1], expires, key) end
  redis.call('HSET', KEYS[2], key, ARGV[3])
  outlive(KEYS[3], ttl + 1000)
  outlive(KEYS[4], ttl + 1000)
end
outlive(KEYS[1], ttl + 1000)
outlive(KEYS[2], ttl + 1000)
return 1
"""

# KEYS: group, capacities, and for a process-specific channel its process's members and roster.
# ARGV: channel, the channel's process key ('' for a normal channel).
GROUP_DISCARD = r"""
local channel, key = ARGV[1], ARGV[2]
redis.call('ZREM', KEYS[1], channel)
redis.call('HDEL', KEYS[2], channel)
if key == '' or redis.call('ZREM', KEYS[3], string.sub(channel, #key + 1)) == 0 then return 1 end
redis.call('DEL', KEYS[4])  -- out of date: the next group_send writes it anew
if redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[1], key)
  redis.call('HDEL', KEYS[2], key)
end
return 1
"""

# KEYS: group, capacities. ARGV: key prefix ('P:'), expiry_ms, default capacity, body, members
# stem, roster stem, the shard's flush epoch key, the calling loop's own process keys comma-joined
# (its entries go to the inbox, where that loop pops them right behind this script, on the same
# connection: no delivery to itself), then capacity key, count, ... of the copies the calling
# process holds (they take room there too).
# Pushes to every unexpired member on this shard (their queues live here too): a normal channel
# gets its own copy, a process's ``p!*`` members one inbox entry together, made from the
# process's roster, so the work here grows with the processes, not their members (members an
# older version listed in the group itself are gathered per process first); a full member
# silently misses the message. Returns how many members missed it (for statistics()).
GROUP_SEND = _COMMON + _COPIES + _PRUNE_GROUP + r"""
local now = now_ms()
local stems = {ARGV[5], ARGV[6]}
prune_group(KEYS[1], KEYS[2], stems, now)
local prefix, expiry_ms, default, body = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local epoch = redis.call('GET', ARGV[7])  -- none yet (no pop ran): entries go to inboxes
local own = {}
for key in string.gmatch(ARGV[8], '[^,]+') do own[key] = true end
local held_here = {}
for i = 9, #ARGV, 2 do held_here[ARGV[i]] = tonumber(ARGV[i + 1]) end
local missed = 0
local function copies(key, roster, members, capacity)
  capacity = (tonumber(capacity) or default) - (held_here[key] or 0)
  return members - push_copies(prefix .. 'i:' .. key, prefix .. 'n:' .. key, prefix .. 'b:' .. key,
                               now, expiry_ms, capacity, roster, members, body,
                               epoch and not own[key] and {prefix .. 'd:' .. key, prefix .. 'dc:' .. key}, epoch)
end
local older, order = {}, {}  -- process key -> its members an older version listed in the group
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bang = string.find(entry, '!', 1, true)
  if not bang then
    local capacity = tonumber(redis.call('HGET', KEYS[2], entry)) or default
    missed = missed + 1 - push(prefix .. 'q:' .. entry, prefix .. 'n:' .. entry, prefix .. 'b:' .. entry,
                               now, expiry_ms, capacity, body)
  elseif bang == #entry then
    local members = prune_process(stems[1] .. entry, stems[2] .. entry, now)
    if members > 0 then
      missed = missed + copies(entry, roster_of(stems[1] .. entry, stems[2] .. entry), members,
                               redis.call('HGET', KEYS[2], entry))
    end
  else
    local key = string.sub(entry, 1, bang)
    if not older[key] then
      older[key] = {}
      order[#order + 1] = key
    end
    table.insert(older[key], entry)
  end
end
for _, key in ipairs(order) do
  local members, names = older[key], {}
  for i, member in ipairs(members) do names[i] = string.sub(member, #key + 1) end
  missed = missed + copies(key, table.concat(names, ','), #members, redis.call('HGET', KEYS[2], members[1]))
end
return missed
"""
