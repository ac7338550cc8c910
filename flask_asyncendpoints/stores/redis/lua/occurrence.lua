-- occurrence: claim one occurrence of a recurring schedule: when the schedule's last claimed
-- occurrence is before `at` (or there is none), `at` becomes the last claimed one.
-- KEYS[1] the shared hash tag {prefix}; the hash {prefix}:occurrences holds the last occurrences
-- ARGV[1] the schedule's name   ARGV[2] at (epoch seconds)
-- Returns 1 when claimed, else 0.
local key = KEYS[1] .. ':occurrences'
local at = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', key, ARGV[1]))
if last and last >= at then
  return 0
end
redis.call('HSET', key, ARGV[1], exact(at))
return 1
