-- Helpers shared by every script in this directory. The store prepends this file to each script
-- when it registers it, so each script is one self-contained EVAL and this file is never run alone.
--
-- A job hash `{prefix}:job:{id}` has these fields (absent when null):
--   n  name                 s  status (Queued, Scheduled, InProgress, Completed, Failed, Canceled)
--   rc retryCount           mr maxRetries
--   ca createdAt            ua lastUpdatedAt        sa startedAt        da completedAt
--   rd retryDelayUntil      (timestamps are epoch seconds)
--   p  payload JSON         r  result JSON          e  error JSON       pg progress JSON
--   cr "1" when a cancel was requested while running
--   t  lease token of the running attempt
--   q  this job's member in the queue sorted set while it is Queued or Scheduled
-- Short names keep a small job's hash in Redis's compact listpack encoding.

-- Tokens kept in the wake list at most: enough to wake every idle worker after a burst of creates,
-- few enough that a burst with nobody waiting costs only a few spurious wake-ups later.
local WAKE_LIST_MAX = 64
-- Seconds an unconsumed wake token lives: idle workers re-check the queue at least this often anyway,
-- and the list must not outlive a store that is no longer used.
local WAKE_LIST_TTL = 60

-- The time to act at: the caller's `now` when given, else the Redis server's clock, so that every
-- process judges leases on one clock whatever its own clock says.
local function clock(arg)
  local now = tonumber(arg)
  if now then
    return now
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A number as text without losing precision (tostring and `..` keep only 14 digits).
local function exact(x)
  return string.format('%.17g', x)
end

local function recount(counts, from, to)
  if from then
    redis.call('HINCRBY', counts, from, -1)
  end
  if to then
    redis.call('HINCRBY', counts, to, 1)
  end
end

-- The next queue member for job `id`. Members are `<sequence>:<id>` so that jobs due at the same
-- time are claimed in the order they were queued (a sorted set orders equal scores by member).
local function queue_member(counts, id)
  return string.format('%016x', redis.call('HINCRBY', counts, 'seq', 1)) .. ':' .. id
end

-- Put a job in the queue, due at `due`.
local function enqueue(queue, counts, key, id, due)
  local member = queue_member(counts, id)
  redis.call('ZADD', queue, due, member)
  redis.call('HSET', key, 'q', member)
end

-- The job id in a queue member, or nil when the member is not one this library wrote.
local function member_id(member)
  return string.match(member, '^%x+:(.+)$')
end

-- Record that a job is finished: purge will delete it `ttl` seconds from now (never without a ttl),
-- and long-polls waiting for it are told on the channel `{prefix}:jobs:finished`, named after the
-- expiring key `{prefix}:jobs:expiring` (a channel is not a key, so it needs no KEYS entry).
local function finished_channel(expiring)
  return string.sub(expiring, 1, -9) .. 'finished'
end

local function expire_later(expiring, id, now, ttl)
  local seconds = tonumber(ttl)
  if seconds then
    redis.call('ZADD', expiring, now + seconds, id)
  end
  redis.call('PUBLISH', finished_channel(expiring), id)
end

-- True when the attempt with `token` holds the job's lease, else nil.
local function held(key, token)
  if token == '' then
    return nil
  end
  local f = redis.call('HMGET', key, 's', 't')
  if f[1] == 'InProgress' and f[2] == token then
    return true
  end
  return nil
end

-- Every redis.call costs a few microseconds, so the list is trimmed only once it is too long and
-- given its time to live when a push creates it (a waiting worker's BLPOP deletes it when it empties).
local function push_wake(wake, n)
  n = math.min(n, WAKE_LIST_MAX)
  if n < 1 then
    return
  end
  local tokens = {}
  for i = 1, n do
    tokens[i] = '1'
  end
  local length = redis.call('RPUSH', wake, unpack(tokens))
  if length == n then
    redis.call('EXPIRE', wake, WAKE_LIST_TTL)
  elseif length > WAKE_LIST_MAX then
    redis.call('LTRIM', wake, 0, WAKE_LIST_MAX - 1)
  end
end

-- redis.call(command, key, ...items) in pieces small enough for unpack (Lua's stack is limited);
-- `step` must be a multiple of the items that belong together (2 for score, member pairs).
local function call_unpacked(command, key, items, step)
  for first = 1, #items, step do
    redis.call(command, key, unpack(items, first, math.min(first + step - 1, #items)))
  end
end

-- Complete the attempts whose job hashes are KEYS[4..], each checked against its own lease; ARGV[3..]
-- holds the job id, token and result JSON of each in turn. KEYS[1..3] are the in-progress, expiring
-- and counts keys, ARGV[1] is now ('' = the server's clock) and ARGV[2] the result ttl ('' = keep).
-- Returns, per attempt in order, 0 when its token does not hold the lease (nothing changes), else
-- {completedAt, progress JSON or '', '1' if a cancel was requested else ''}.
local function complete_batch()
  local inprogress, expiring, counts = KEYS[1], KEYS[2], KEYS[3]
  local now = clock(ARGV[1])
  local stamp, ttl, channel = exact(now), tonumber(ARGV[2]), finished_channel(expiring)
  local replies, done, expiries = {}, {}, {}
  for i = 4, #KEYS do
    local key, a = KEYS[i], 3 * (i - 4) + 3
    local id, token = ARGV[a], ARGV[a + 1]
    local f = redis.call('HMGET', key, 's', 't', 'pg', 'cr')
    if token ~= '' and f[1] == 'InProgress' and f[2] == token then
      redis.call('HSET', key, 's', 'Completed', 'r', ARGV[a + 2], 'da', now, 'ua', now)
      redis.call('HDEL', key, 'e', 't')
      redis.call('PUBLISH', channel, id)
      done[#done + 1] = id
      if ttl then
        expiries[#expiries + 1] = now + ttl
        expiries[#expiries + 1] = id
      end
      replies[#replies + 1] = {stamp, f[3] or '', f[4] or ''}
    else
      replies[#replies + 1] = 0
    end
  end
  if #done > 0 then
    call_unpacked('ZREM', inprogress, done, 1000)
    call_unpacked('ZADD', expiring, expiries, 1000)
    redis.call('HINCRBY', counts, 'InProgress', -#done)
    redis.call('HINCRBY', counts, 'Completed', #done)
  end
  return replies
end

-- Create job `id` (its hash is `key`) as Queued, due at `now`, unless a job with that id exists or
-- `max_pending` (a number or nil) jobs are already Queued, Scheduled or InProgress. Pushes no wake
-- token: the caller does, once for all it created.
-- Returns {1, createdAt} when created, {0, job fields} when the id already existed, {-1} at the limit.
local function create_one(key, queue, counts, id, name, max_retries, payload, now, max_pending)
  if redis.call('EXISTS', key) == 1 then
    return {0, redis.call('HGETALL', key)}
  end
  if max_pending then
    local c = redis.call('HMGET', counts, 'Queued', 'Scheduled', 'InProgress')
    if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0) >= max_pending then
      return {-1}
    end
  end
  local member = queue_member(counts, id)
  redis.call('HSET', key, 'n', name, 's', 'Queued', 'rc', 0, 'mr', max_retries, 'ca', now, 'ua', now, 'p', payload,
    'q', member)
  recount(counts, nil, 'Queued')
  redis.call('ZADD', queue, now, member)
  return {1, exact(now)}
end
