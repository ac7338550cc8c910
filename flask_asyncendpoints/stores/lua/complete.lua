-- complete: finish the attempt holding the lease with a result; the error is cleared.
-- KEYS[1] job hash   KEYS[2] in progress   KEYS[3] expiring {prefix}:jobs:expiring   KEYS[4] counts
-- ARGV[1] now ('' = the server's clock)   ARGV[2] job id   ARGV[3] token   ARGV[4] result JSON
-- ARGV[5] result ttl in seconds ('' = keep the job)
-- Returns the job fields, or nil when the token does not hold the lease (nothing changes).
local key = KEYS[1]
if not complete_one(key, KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3], ARGV[4], clock(ARGV[1]), ARGV[5]) then
  return nil
end
return redis.call('HGETALL', key)
