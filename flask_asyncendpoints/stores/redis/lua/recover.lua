-- recover: take back up to `limit` jobs whose lease ran out (their worker died or hung). A job with
-- retries left is Queued again, due now, retryCount + 1; one without is Failed with ARGV[4] as error.
-- Safe to run from many processes at once: each expired job is taken by exactly one call.
-- KEYS[1] in progress   KEYS[2] queue   KEYS[3] expiring   KEYS[4] counts   KEYS[5] wake list
-- KEYS[6] job key prefix {prefix}:job: (not a key: see claim.lua)
-- ARGV[1] now ('' = the server's clock)   ARGV[2] result ttl ('' = keep the job)   ARGV[3] limit
-- ARGV[4] the error JSON written on jobs that fail ({"code":"LEASEEXPIRED",...})
-- Returns a list of {job id, job fields} of the jobs recovered, as they are now.
local inprogress, queue, expiring, counts, wake, job_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = clock(ARGV[1])
-- A lease that runs out exactly now is still held (renew accepts it), hence the exclusive bound.
local ids = redis.call('ZRANGEBYSCORE', inprogress, '-inf', '(' .. exact(now), 'LIMIT', 0, tonumber(ARGV[3]))
local recovered = {}
local requeued = 0

for _, id in ipairs(ids) do
  redis.call('ZREM', inprogress, id)
  local key = job_prefix .. id
  local f = redis.call('HMGET', key, 's', 'rc', 'mr')
  -- Anything else is an index entry left behind by a job that is gone: dropping it is the cleanup.
  if f[1] == 'InProgress' then
    local retries, max_retries = tonumber(f[2]) or 0, tonumber(f[3]) or 0
    redis.call('HDEL', key, 't')
    if retries < max_retries then
      redis.call('HSET', key, 's', 'Queued', 'rc', retries + 1, 'ua', now)
      recount(counts, 'InProgress', 'Queued')
      enqueue(queue, counts, key, id, now)
      requeued = requeued + 1
    else
      redis.call('HSET', key, 's', 'Failed', 'e', ARGV[4], 'da', now, 'ua', now)
      recount(counts, 'InProgress', 'Failed')
      expire_later(expiring, id, now, ARGV[2])
    end
    recovered[#recovered + 1] = {id, redis.call('HGETALL', key)}
  end
end
if requeued > 0 then
  push_wake(wake, requeued)
end
return recovered
