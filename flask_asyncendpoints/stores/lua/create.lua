-- create: store a new Queued job due at once and wake an idle worker; idempotent on the job id.
-- KEYS[1] job hash     {prefix}:job:{id}
-- KEYS[2] queue        {prefix}:jobs:queue
-- KEYS[3] counts       {prefix}:jobs:counts
-- KEYS[4] wake list    {prefix}:jobs:wake
-- ARGV[1] now (epoch seconds; '' = the server's clock)
-- ARGV[2] job id       ARGV[3] name      ARGV[4] max retries     ARGV[5] payload JSON
-- ARGV[6] max pending ('' = no limit)
-- Returns {1, createdAt} when created (the caller knows every other field), {0, job fields} when
-- the id already existed, {-1} when max pending jobs are already Queued, Scheduled or InProgress
-- (nothing is stored).
local key, queue, counts, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

if redis.call('EXISTS', key) == 1 then
  return {0, redis.call('HGETALL', key)}
end
local max_pending = tonumber(ARGV[6])
if max_pending then
  local c = redis.call('HMGET', counts, 'Queued', 'Scheduled', 'InProgress')
  if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0) >= max_pending then
    return {-1}
  end
end

local now = clock(ARGV[1])
local member = queue_member(counts, ARGV[2])
redis.call('HSET', key, 'n', ARGV[3], 's', 'Queued', 'rc', 0, 'mr', ARGV[4], 'ca', now, 'ua', now, 'p', ARGV[5],
  'q', member)
recount(counts, nil, 'Queued')
redis.call('ZADD', queue, now, member)
push_wake(wake, 1)
return {1, exact(now)}
