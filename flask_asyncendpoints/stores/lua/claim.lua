-- claim: lease up to `limit` due jobs, oldest due first, to the caller.
-- KEYS[1] queue          {prefix}:jobs:queue
-- KEYS[2] in progress    {prefix}:jobs:inprogress
-- KEYS[3] counts         {prefix}:jobs:counts
-- KEYS[4] job key prefix {prefix}:job:   (not a key: job ids are only known here, so job keys are
--         built from it; with a hash-tagged prefix such as {ae} they share the slot of KEYS[1..3])
-- ARGV[1] now ('' = the server's clock)   ARGV[2] limit   ARGV[3] lease seconds
-- ARGV[4] token base (random, unique per call; attempt tokens are `<base>.<n>`)
-- Returns a list of {job id, token, job fields}.
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
      -- Read once; the reply is the fields as they are after the changes below (built here
      -- rather than read again: every redis.call costs a few microseconds).
      local all = redis.call('HGETALL', key)
      local f = {}
      for i = 1, #all, 2 do
        f[all[i]] = all[i + 1]
      end
      local status = f.s
      local waiting = status == 'Queued' or status == 'Scheduled'
      if waiting and f.q == member and tonumber(f.rc) and tonumber(f.mr) then
        local token = ARGV[4] .. '.' .. (#claimed + 1)
        redis.call('HSET', key, 's', 'InProgress', 'sa', now, 'ua', now, 't', token)
        redis.call('HDEL', key, 'rd', 'pg', 'cr', 'q')
        f.s, f.sa, f.ua, f.t = 'InProgress', stamp, stamp, token
        f.rd, f.pg, f.cr, f.q = nil, nil, nil, nil
        local fields = {}
        for name, value in pairs(f) do
          fields[#fields + 1] = name
          fields[#fields + 1] = value
        end
        leases[#leases + 1] = lease_until
        leases[#leases + 1] = id
        taken[status] = (taken[status] or 0) + 1
        claimed[#claimed + 1] = {id, token, fields}
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
return claimed
