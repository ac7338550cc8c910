-- fail: fail the attempt holding the lease. With retries left and a retry delay the job is
-- Scheduled, retryCount + 1, due `delay` seconds from now; otherwise it is Failed. The error is kept.
-- KEYS[1] job hash   KEYS[2] in progress   KEYS[3] queue   KEYS[4] expiring   KEYS[5] counts
-- ARGV[1] now ('' = the server's clock)   ARGV[2] job id   ARGV[3] token   ARGV[4] error JSON
-- ARGV[5] retry delay in seconds ('' = fail for good)   ARGV[6] result ttl ('' = keep the job)
-- Returns the job fields, or nil when the token does not hold the lease (nothing changes).
local key, inprogress, queue, expiring, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[2]
if not held(key, ARGV[3]) then
  return nil
end
local now = clock(ARGV[1])
local f = redis.call('HMGET', key, 'rc', 'mr')
local retries, max_retries = tonumber(f[1]) or 0, tonumber(f[2]) or 0
local delay = tonumber(ARGV[5])
redis.call('HSET', key, 'e', ARGV[4], 'ua', now)
redis.call('HDEL', key, 't')
redis.call('ZREM', inprogress, id)
if delay and retries < max_retries then
  local due = now + delay
  redis.call('HSET', key, 's', 'Scheduled', 'rc', retries + 1, 'rd', due)
  recount(counts, 'InProgress', 'Scheduled')
  enqueue(queue, counts, key, id, due)
else
  redis.call('HSET', key, 's', 'Failed', 'da', now)
  recount(counts, 'InProgress', 'Failed')
  expire_later(expiring, id, now, ARGV[6])
end
return redis.call('HGETALL', key)
