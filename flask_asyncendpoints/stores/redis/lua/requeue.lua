-- requeue: put a Failed job back in the queue, due now, with its retries restored (an operator's
-- retry). The last error stays on the job until an attempt succeeds.
-- KEYS[1] job hash   KEYS[2] queue   KEYS[3] expiring   KEYS[4] counts   KEYS[5] wake list
-- ARGV[1] now ('' = the server's clock)   ARGV[2] job id
-- Returns the job fields, or nil when the job does not exist or is not Failed (nothing changes).
local key, queue, expiring, counts, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('HGET', key, 's') ~= 'Failed' then
  return nil
end
local now = clock(ARGV[1])
redis.call('HSET', key, 's', 'Queued', 'rc', 0, 'ua', now)
redis.call('HDEL', key, 'da', 'rd', 't', 'cr', 'pg')
redis.call('ZREM', expiring, ARGV[2])
recount(counts, 'Failed', 'Queued')
enqueue(queue, counts, key, ARGV[2], now)
push_wake(wake, 1)
return redis.call('HGETALL', key)
