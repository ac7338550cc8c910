-- finish_canceled: end the attempt holding the lease as Canceled (it stopped on a cancel request).
-- KEYS[1] job hash   KEYS[2] in progress   KEYS[3] expiring   KEYS[4] counts
-- ARGV[1] now ('' = the server's clock)   ARGV[2] job id   ARGV[3] token
-- ARGV[4] result ttl in seconds ('' = keep the job)
-- Returns the job fields, or nil when the token does not hold the lease (nothing changes).
local key, inprogress, expiring, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if not held(key, ARGV[3]) then
  return nil
end
local now = clock(ARGV[1])
redis.call('HSET', key, 's', 'Canceled', 'da', now, 'ua', now)
redis.call('HDEL', key, 't')
redis.call('ZREM', inprogress, ARGV[2])
recount(counts, 'InProgress', 'Canceled')
expire_later(expiring, ARGV[2], now, ARGV[4])
return redis.call('HGETALL', key)
