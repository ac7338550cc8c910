-- claim: lease up to `limit` due jobs, oldest due first, to the caller.
-- KEYS[1] queue          {prefix}:jobs:queue
-- KEYS[2] in progress    {prefix}:jobs:inprogress
-- KEYS[3] counts         {prefix}:jobs:counts
-- KEYS[4] job key prefix {prefix}:job:   (not a key: job ids are only known here, so job keys are
--         built from it; with a hash-tagged prefix such as {ae} they share the slot of KEYS[1..3])
-- ARGV[1] now ('' = the server's clock)   ARGV[2] limit   ARGV[3] lease seconds
-- ARGV[4] token base (random, unique per call; attempt tokens are `<base>.<n>`)
-- Returns {startedAt, claimed...}, each claimed job as {job id, token, name, retryCount, maxRetries,
-- createdAt, payload JSON, error JSON or ''}: with startedAt, every field a claimed job has (a claim
-- clears retryDelayUntil, progress and a cancel request, and no waiting job has a result or a
-- completedAt), so the caller needs no copy of the whole hash.
--
-- A queue member whose job is missing, corrupt or no longer waiting is removed and skipped, so a
-- claim never blocks behind it. At most `limit + MAX_SKIPPED` members are looked at per call to
-- bound the script's run time; the next claim carries on.
local MAX_SKIPPED = 1000
local queue, inprogress, counts, job_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = clock(ARGV[1])
local limit = tonumber(ARGV[2])
local stamp = exact(now)
local lease_until = now + tonumber(ARGV[3])
local claimed = {}
local leases = {}
local taken = {}
local budget = limit + MAX_SKIPPED

-- Every redis.call costs a few microseconds: the indexes and counts change once per batch.
while #claimed < limit and budget > 0 do
  local members = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'LIMIT', 0, math.min(limit - #claimed, budget))
  if #members == 0 then
    break
  end
  call_unpacked('ZREM', queue, members, 1000)
  budget = budget - #members
  for _, member in ipairs(members) do
    local id = member_id(member)
    if id then
      local key = job_prefix .. id
      local f = redis.call('HMGET', key, 's', 'q', 'rc', 'mr', 'n', 'ca', 'p', 'e')
      local status = f[1]
      local waiting = status == 'Queued' or status == 'Scheduled'
      if waiting and f[2] == member and tonumber(f[3]) and tonumber(f[4]) then
        local token = ARGV[4] .. '.' .. (#claimed + 1)
        redis.call('HSET', key, 's', 'InProgress', 'sa', now, 'ua', now, 't', token)
        redis.call('HDEL', key, 'rd', 'pg', 'cr', 'q')
        leases[#leases + 1] = lease_until
        leases[#leases + 1] = id
        taken[status] = (taken[status] or 0) + 1
        claimed[#claimed + 1] = {id, token, f[5] or '', f[3], f[4], f[6] or '', f[7] or '{}', f[8] or ''}
      end
    end
  end
end
if #claimed > 0 then
  call_unpacked('ZADD', inprogress, leases, 1000)
  for status, n in pairs(taken) do
    redis.call('HINCRBY', counts, status, -n)
  end
  redis.call('HINCRBY', counts, 'InProgress', #claimed)
end
table.insert(claimed, 1, stamp)
return claimed
