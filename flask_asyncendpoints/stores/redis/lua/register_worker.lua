-- register_worker: register a worker process or renew its registration; registrations whose time
-- ran out are dropped.
-- KEYS[1] the shared hash tag {prefix}: {prefix}:workers (ids by when they run out) and
-- {prefix}:worker:<id> (the registration as JSON, with a time to live that only collects garbage)
-- ARGV[1] now   ARGV[2] worker id   ARGV[3] registration JSON   ARGV[4] ttl in seconds
-- ARGV[5] the key's time to live in milliseconds
-- Returns 1.
local G = KEYS[1]
local now = tonumber(ARGV[1])
redis.call('ZADD', G .. ':workers', now + tonumber(ARGV[4]), ARGV[2])
redis.call('SET', G .. ':worker:' .. ARGV[2], ARGV[3], 'PX', ARGV[5])
redis.call('ZREMRANGEBYSCORE', G .. ':workers', '-inf', '(' .. exact(now))
return 1
