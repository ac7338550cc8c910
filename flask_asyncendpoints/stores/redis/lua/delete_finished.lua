-- delete_finished: delete one finished job that finished at or before a cutoff, with its index entry.
-- KEYS[1] job hash   KEYS[2] expiring   KEYS[3] counts
-- ARGV[1] job id   ARGV[2] cutoff (epoch seconds)
-- Returns 1 when the job was deleted, 0 when it is gone, not finished or finished after the cutoff.
local key, expiring, counts = KEYS[1], KEYS[2], KEYS[3]
local f = redis.call('HMGET', key, 's', 'da')
local status, done = f[1], tonumber(f[2])
if (status ~= 'Completed' and status ~= 'Failed' and status ~= 'Canceled') or not done then
  return 0
end
if done > tonumber(ARGV[2]) then
  return 0
end
redis.call('DEL', key)
redis.call('ZREM', expiring, ARGV[1])
recount(counts, status, nil)
return 1
