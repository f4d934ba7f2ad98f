"""The Lua scripts: each layer operation is one atomic script, so one round trip per shard.

Storage on a shard, for prefix P, channel C and its capacity key K (C itself, or the
non-local part ``p!`` of a process-specific channel, shared by all ``p!*``):

- ``P:q:C``  list of C's messages, oldest first, each ``<expires_ms>:<id>:<body>``
- ``P:n:K``  sorted set of the ids of K's unexpired messages, scored by expiry: its size is
  what counts against capacity, exactly, across every channel sharing K
- ``P:b:K``  K's message id counter; every push takes the next id and PUBLISHes it on the
  pub/sub channel of the same name (the "bell", see bells.py). A counter made anew starts
  at the server's time in µs, so ids keep growing across a flush or an expired counter
- ``P:i:K``  K's inbox: group copies for a process's ``p!*`` members (one entry per group_send
  and process, ``<expires_ms>:<first id>+<copies>:<member>,<member>...:<body>``, each member by
  its local name, ``x`` for ``p!x`` (group_scripts.py); member i's copy has id first + i; the
  count travels with the entry, so a pop need not count the members). A pop drains it (see
  copies.py)
- ``P:d:K`` (pub/sub) where a loop of K's process takes its group copies in one hop, when
  nothing older of K waits here: GROUP_SEND publishes the entry there instead of queueing it
  (deliveries.py), and ``P:dc:K`` how many more entries it may publish there before the loop
  says it read them (none: ``DELIVERY_CREDIT``, group_scripts.py)
- ``P:n:K|g`` sorted set of the inbox entries' ``<first id>+<copies>``, scored by expiry, and
  ``P:n:K|t`` their copies in all: what the inbox holds counts against capacity by entry, one
  command per group_send, not one per member
- a group's memberships: group_scripts.py (``P:g:G`` and the keys named after it)

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

-- n consecutive message ids of a bell: (the first, the last, whether the counter is new). A
-- counter made anew starts at the server's time in µs.
local function next_ids(bell, now, n)
  local last = redis.call('INCRBY', bell, n)
  if last == n then
    local first = now * 1000
    redis.call('SET', bell, string.format('%.0f', first + n - 1))
    return first, first + n - 1, true
  end
  return last - n + 1, last, false
end

-- The next message id of a bell, as a string, and whether the counter is new.
local function next_id(bell, now)
  local id, _, fresh = next_ids(bell, now, 1)
  return string.format('%.0f', id), fresh
end

-- A queued message's id: ``<expires>:<id>:<body>``.
local function entry_id(entry)
  return tonumber(string.match(entry, '^[^:]*:([^:]*):'))
end

local function ring(bell, id, ttl, fresh)
  extend(bell, ttl, fresh)
  redis.call('PUBLISH', bell, id)
end

-- Copies in a capacity key's inbox, counted by entry (count .. '|g', count .. '|t'); drops the
-- expired entries' copies from the total first. Both keys go when the total is 0.
local function uncount_copies(count, total)
  if total <= 0 then
    redis.call('DEL', count .. '|g', count .. '|t')
  else
    redis.call('SET', count .. '|t', total, 'KEEPTTL')
  end
end

local function copies_held(count, now)
  local total = tonumber(redis.call('GET', count .. '|t') or '0')
  if total == 0 then return 0 end
  local gone = redis.call('ZRANGEBYSCORE', count .. '|g', '-inf', now)
  if #gone > 0 then
    for _, entry in ipairs(gone) do total = total - tonumber(string.match(entry, '%+(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', count .. '|g', '-inf', now)
    uncount_copies(count, total)
  end
  return total
end

-- Queue one message unless its capacity key holds `capacity` unexpired messages already.
local function push(queue, count, bell, now, expiry_ms, capacity, body)
  redis.call('ZREMRANGEBYSCORE', count, '-inf', now)
  local singles = redis.call('ZCARD', count)
  local held = singles + copies_held(count, now)
  if held >= capacity then return 0 end
  local expires = now + expiry_ms
  local id, fresh_bell = next_id(bell, now)
  redis.call('ZADD', count, expires, id)
  local length = redis.call('RPUSH', queue, string.format('%.0f', expires) .. ':' .. id .. ':' .. body)
  local ttl = expiry_ms + 1000
  extend(queue, ttl, length == 1)
  extend(count, ttl, singles == 0)
  ring(bell, id, ttl, fresh_bell)
  return 1
end
"""

# KEYS: queue, count, bell. ARGV: expiry_ms, capacity, body. Returns 1 (queued) or 0 (full).
SEND = _COMMON + r"""
return push(KEYS[1], KEYS[2], KEYS[3], now_ms(), tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
"""

# KEYS: count, bell, inbox, flush epoch. ARGV: the queue key of a member without its local name
# (``P:q:p!``), how many messages to read ahead per queue, how many queues are wanted, their
# channels' local names comma-joined (``x`` for ``p!x``; '' for a normal channel, its own capacity
# key), and how many messages each queue's receivers want, comma-joined ('' when one each): see
# ``pop_arguments``. The wanted queues go as two strings, not a key each, and are read only when
# a message waits in a queue: a fan-out's pop for hundreds of waiting members costs the server no
# string per member. (A queue is the same key as ARGV[1] .. local name, in a cluster too, where
# all of one capacity key's keys share its slot.)
# First drains the inbox, uncounting its copies (the process counts what it holds, copies.py).
# Each unexpired entry's copies are marked, one letter per member: 't' taken for a receiver
# waiting here, 'h' held by the receiving process for a receive to come, 'q' put in the member's
# queue in id order (counted there) because older messages wait there, so the copy cannot
# overtake them. When no message of the capacity key waits in any queue, no copy can be 'q' and
# the marks are left out (''): a member is 't' while its queue's receivers want more, in entry
# order, else 'h'; the client reads them the same way. Then pops up to the rest of what each
# queue's receivers want (dropping expired messages on the way), and up to the read-ahead more,
# left counted (the process uncounts each as a receive takes it, copies.py).
# Returns {now_ms, last_id, epoch, entries, entry, marks, ..., i, message, i, message, ...} (-i for
# a message read ahead): the bell's last id, read in the same atomic step, so the receiver can
# tell rings of later pushes from rings it already saw; and the shard's flush epoch (made at the
# server's time in µs if missing, see FLUSHED), so the process can drop what it holds from a pop
# that ran before a flush it heard of (flushes.py).
POP = _COMMON + r"""
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = string.format('%.0f', now * 1000)
  redis.call('SET', KEYS[4], epoch)
end
local out = {now, redis.call('GET', KEYS[2]) or '0', epoch, 0}
local queues = ARGV[1]
local draining = redis.call('LLEN', KEYS[3]) > 0
local total = draining and copies_held(KEYS[1], now) or 0
local checked = redis.call('ZCARD', KEYS[1]) > 0  -- messages wait in queues: look at each member's
local wanted, order = {}, {}  -- queue -> how many its receivers want; the queues in ARGV's order
if checked then  -- unchecked, no queue is read (a fan-out's waiters: hundreds)
  local counts = {}
  for count in string.gmatch(ARGV[5], '[^,]+') do counts[#counts + 1] = tonumber(count) end
  local n = tonumber(ARGV[3])
  for name in string.gmatch(ARGV[4] .. ',', '([^,]*),') do
    if #order == n then break end
    local queue = queues .. name
    order[#order + 1] = queue
    wanted[queue] = counts[#order] or 1
  end
end
while true do
  local entry = redis.call('LPOP', KEYS[3])
  if not entry then break end
  local c1 = string.find(entry, ':', 1, true)
  local c2 = string.find(entry, ':', c1 + 1, true)
  local c3 = string.find(entry, ':', c2 + 1, true)
  local expires = tonumber(string.sub(entry, 1, c1 - 1))
  local copies = string.sub(entry, c1 + 1, c2 - 1)  -- '<first id>+<n>', as counted in count .. '|g'
  local members = string.sub(entry, c2 + 1, c3 - 1)
  local plus = string.find(copies, '+', 1, true)
  local first, n
  if plus then
    first, n = string.sub(copies, 1, plus - 1), tonumber(string.sub(copies, plus + 1))
  else  -- an entry an older version made, without its count
    first, n = copies, select(2, string.gsub(members, ',', ',')) + 1
    copies = first .. '+' .. n
  end
  if redis.call('ZREM', KEYS[1] .. '|g', copies) == 1 then total = total - n end
  if expires > now then
    local marks = ''
    if checked then
      local id = tonumber(first)
      local letters = {}
      for member in string.gmatch(members, '[^,]+') do
        local queue = queues .. member
        local head = redis.call('LINDEX', queue, 0)
        local head_id = head and entry_id(head)
        if head_id and head_id < id then
          local copy = string.sub(entry, 1, c1) .. string.format('%.0f', id) .. ':' .. string.sub(entry, c3 + 1)
          local newer = nil
          for _, waiting in ipairs(redis.call('LRANGE', queue, 0, -1)) do
            if entry_id(waiting) > id then newer = waiting break end
          end
          if newer then redis.call('LINSERT', queue, 'BEFORE', newer, copy) else redis.call('RPUSH', queue, copy) end
          redis.call('ZADD', KEYS[1], expires, string.format('%.0f', id))
          extend(queue, expires - now + 1000, false)
          letters[#letters + 1] = 'q'
        elseif (wanted[queue] or 0) > 0 then
          wanted[queue] = wanted[queue] - 1
          letters[#letters + 1] = 't'
        else
          letters[#letters + 1] = 'h'
        end
        id = id + 1
      end
      marks = table.concat(letters)
    end  -- unchecked, what copies the waiters take is left to the client: the queues are not popped
    out[#out + 1] = entry
    out[#out + 1] = marks
    out[4] = out[4] + 1
  end
end
if draining then uncount_copies(KEYS[1], total) end
local ahead = tonumber(ARGV[2])
for i, queue in ipairs(order) do  -- none unless checked: no message counted, no queue of the key holds one
  local left, extra = wanted[queue], ahead
  while left > 0 or extra > 0 do
    local entry = redis.call('LPOP', queue)
    if not entry then break end
    local first = string.find(entry, ':', 1, true)
    if tonumber(string.sub(entry, 1, first - 1)) > now then
      if left > 0 then
        local second = string.find(entry, ':', first + 1, true)
        redis.call('ZREM', KEYS[1], string.sub(entry, first + 1, second - 1))
        out[#out + 1] = i
        left = left - 1
      else
        out[#out + 1] = -i
        extra = extra - 1
      end
      out[#out + 1] = entry
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

# KEYS: queue_1..queue_n. ARGV: for each queue, its process's inbox and its channel's local name ('' and
# '' for a normal channel). Read only. Returns {now_ms, waiting_1, expires_1, ...}: per queue the
# messages after its expired head (expired ones are dropped by the next pop) and the unexpired
# inbox copies for its channel, and the expiry stamp of the oldest of them (0 when none waits).
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
  local waiting = length - skipped
  local inbox, member = ARGV[2 * i - 1], ARGV[2 * i]
  if inbox ~= '' then
    for _, entry in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
      local stamp, members = string.match(entry, '^([^:]*):[^:]*:([^:]*):')
      stamp = tonumber(stamp)
      if stamp > out[1] and string.find(',' .. members .. ',', ',' .. member .. ',', 1, true) then
        waiting = waiting + 1
        if expires == 0 or stamp < expires then expires = stamp end
      end
    end
  end
  out[#out + 1] = waiting
  out[#out + 1] = expires
end
return out
"""

# KEYS: flush epoch. Ends a flush (after its keys are deleted): sets the shard's flush epoch to a
# greater number (at least the server's time in µs, so it grows across a restart that lost the
# key too) and PUBLISHes it on the channel of the same name. Returns {epoch, processes that heard}.
FLUSHED = r"""
local t = redis.call('TIME')
local epoch = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
epoch = string.format('%.0f', epoch)
redis.call('SET', KEYS[1], epoch)
return {epoch, redis.call('PUBLISH', KEYS[1], epoch)}
"""


def pop_arguments(queues: str, read_ahead: int, capacity_key: str, wanted: dict[str, int]) -> list:
    """POP's ARGV: ``queues`` (the queue key of ``capacity_key``'s members without their local
    names), the read-ahead, and the ``wanted`` channels (all of ``capacity_key``) with their counts."""
    start = len(capacity_key)
    counts = wanted.values()
    return [queues, read_ahead, len(wanted), ",".join([channel[start:] for channel in wanted]),
            "" if all(count == 1 for count in counts) else ",".join(map(str, counts))]
