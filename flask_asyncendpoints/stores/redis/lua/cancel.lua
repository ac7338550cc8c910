-- cancel: Queued and Scheduled jobs become Canceled at once; a running job gets a cancel request.
-- KEYS[1] job hash   KEYS[2] queue   KEYS[3] expiring   KEYS[4] counts
-- ARGV[1] now ('' = the server's clock)   ARGV[2] job id   ARGV[3] result ttl ('' = keep the job)
-- Returns {outcome} or {outcome, job fields}; outcome is 'not_found', 'finished' (nothing changed),
-- 'requested' or 'canceled'.
local key, queue, expiring, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local f = redis.call('HMGET', key, 's', 'q')
local status = f[1]
if not status then
  return {'not_found'}
end
if status == 'InProgress' then
  redis.call('HSET', key, 'cr', '1', 'ua', clock(ARGV[1]))
  return {'requested', redis.call('HGETALL', key)}
end
if status ~= 'Queued' and status ~= 'Scheduled' then
  return {'finished', redis.call('HGETALL', key)}
end
local now = clock(ARGV[1])
if f[2] then
  redis.call('ZREM', queue, f[2])
end
redis.call('HSET', key, 's', 'Canceled', 'da', now, 'ua', now)
redis.call('HDEL', key, 'q', 'rd', 't')
recount(counts, status, 'Canceled')
expire_later(expiring, ARGV[2], now, ARGV[3])
return {'canceled', redis.call('HGETALL', key)}
