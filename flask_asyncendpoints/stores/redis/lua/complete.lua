-- complete: finish the attempt holding the lease with a result; the error is cleared.
-- KEYS[1] in progress   KEYS[2] expiring {prefix}:jobs:expiring   KEYS[3] counts   KEYS[4] job hash
-- ARGV[1] now ('' = the server's clock)   ARGV[2] result ttl in seconds ('' = keep the job)
-- ARGV[3] job id   ARGV[4] token   ARGV[5] result JSON
-- Returns the job fields, or nil when the token does not hold the lease (nothing changes).
if complete_batch()[1] == 0 then
  return nil
end
return redis.call('HGETALL', KEYS[4])
