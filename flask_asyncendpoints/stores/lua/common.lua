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

-- Put a job in the queue, due at `due`. Members are `<sequence>:<id>` so that jobs due at the same
-- time are claimed in the order they were queued (a sorted set orders equal scores by member).
local function enqueue(queue, counts, key, id, due)
  local seq = redis.call('HINCRBY', counts, 'seq', 1)
  local member = string.format('%016x', seq) .. ':' .. id
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
local function expire_later(expiring, id, now, ttl)
  local seconds = tonumber(ttl)
  if seconds then
    redis.call('ZADD', expiring, now + seconds, id)
  end
  redis.call('PUBLISH', string.sub(expiring, 1, -9) .. 'finished', id)
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

local function push_wake(wake, n)
  for _ = 1, n do
    redis.call('RPUSH', wake, '1')
  end
  redis.call('LTRIM', wake, 0, WAKE_LIST_MAX - 1)
  redis.call('EXPIRE', wake, WAKE_LIST_TTL)
end

-- Complete the attempt holding `key`'s lease with `result` (JSON); the error is cleared. Returns
-- true, or nil when `token` does not hold the lease (nothing changes).
local function complete_one(key, inprogress, expiring, counts, id, token, result, now, ttl)
  if not held(key, token) then
    return nil
  end
  redis.call('HSET', key, 's', 'Completed', 'r', result, 'da', now, 'ua', now)
  redis.call('HDEL', key, 'e', 't')
  redis.call('ZREM', inprogress, id)
  recount(counts, 'InProgress', 'Completed')
  expire_later(expiring, id, now, ttl)
  return true
end
