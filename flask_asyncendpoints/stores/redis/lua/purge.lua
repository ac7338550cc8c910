-- purge: delete up to `limit` finished jobs whose result ttl has run out, with every index entry.
-- KEYS[1] expiring   KEYS[2] counts   KEYS[3] job key prefix {prefix}:job: (not a key: see claim.lua)
-- ARGV[1] now ('' = the server's clock)   ARGV[2] limit
-- Returns the number of jobs deleted.
-- A finished job is in no other index (claim, complete, fail, cancel and recover take it out of the
-- queue and the in-progress set), so deleting its hash and its expiring entry leaves nothing behind.
local expiring, counts, job_prefix = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', expiring, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local purged = 0

for _, id in ipairs(ids) do
  redis.call('ZREM', expiring, id)
  local key = job_prefix .. id
  local status = redis.call('HGET', key, 's')
  if status == 'Completed' or status == 'Failed' or status == 'Canceled' then
    redis.call('DEL', key)
    recount(counts, status, nil)
    purged = purged + 1
  end
end
return purged
