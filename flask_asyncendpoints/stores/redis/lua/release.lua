-- release: give a claimed job back untouched (at shutdown): Queued, due now, no retry counted.
-- KEYS[1] job hash   KEYS[2] in progress   KEYS[3] queue   KEYS[4] counts   KEYS[5] wake list
-- ARGV[1] now ('' = the server's clock)   ARGV[2] job id   ARGV[3] token
-- Returns 1, or 0 when the token does not hold the lease (nothing changes).
local key, inprogress, queue, counts, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if not held(key, ARGV[3]) then
  return 0
end
local now = clock(ARGV[1])
redis.call('HSET', key, 's', 'Queued', 'ua', now)
redis.call('HDEL', key, 't')
redis.call('ZREM', inprogress, ARGV[2])
recount(counts, 'InProgress', 'Queued')
enqueue(queue, counts, key, ARGV[2], now)
push_wake(wake, 1)
return 1
