-- recover: take back up to `limit` jobs of one queue whose lease ran out (their worker died or hung).
-- A job with retries left is Queued again, due now, retryCount + 1; one without is Failed with ARGV[4]
-- as its error; one with a cancel requested is Canceled (the cancel rule). Each attempt's record
-- says LeaseExpired. Safe to run from many processes at once: each expired lease is taken once.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] result ttl ('' = keep the job)   ARGV[3] limit
-- ARGV[4] the error JSON written on jobs that fail ({"code":"LEASEEXPIRED",...})
-- ARGV[5] its code as JSON   ARGV[6] its message as JSON   ARGV[7] history limit   ARGV[8] sequence
-- Returns a list of {job id, record, state fields} of the jobs recovered, as they are now.
local T = KEYS[1]
local run = T .. ':run'
local now = tonumber(ARGV[1])
local ttl, limit, history = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[7])
local stamp = exact(now)
-- A lease that runs out exactly now is still held (renew accepts it), hence the exclusive bounds.
local members = redis.call('ZRANGEBYSCORE', run, '0', '(' .. stamp, 'LIMIT', 0, limit)
if #members < limit then
  local canceled = redis.call('ZRANGEBYSCORE', run, '(-' .. stamp, '(0', 'LIMIT', 0, limit - #members)
  for _, member in ipairs(canceled) do
    members[#members + 1] = member
  end
end
local recovered = {}
local requeued = 0
for _, member in ipairs(members) do
  local score = tonumber(redis.call('ZSCORE', run, member))
  redis.call('ZREM', run, member)
  local id = running_id(member)
  local rec = id and redis.call('GET', T .. ':j:' .. id)
  local ca, mr, sortkey, jname = parse_record(rec)
  local state = id and T .. ':s:' .. id
  local f = ca and redis.call('HMGET', state, 'rc', 'sa', 'w', 'h', 's') or {}
  -- Anything else is an index entry left behind by a job that is gone: dropping it is the cleanup.
  if f[5] == 'InProgress' then
    if score < 0 then
      cancel_attempt(T, id, jname, f, now, ttl, history, ARGV[5], ARGV[6])
    else
      local retries = tonumber(f[1]) or 0
      local h = add_history(f[4], attempt_record(retries + 1, f[2], stamp, f[3], 'LeaseExpired', ARGV[5], ARGV[6]),
        history)
      if h then
        redis.call('HSET', state, 'h', h)
      end
      if retries < mr then
        local queued = requeue_member(sortkey, now, ARGV[8], id)
        redis.call('HSET', state, 's', 'Queued', 'rc', retries + 1, 'ua', stamp, 'q', queued)
        redis.call('ZADD', T .. ':ready', 0, queued)
        count(T, 'Q' .. jname, 1)
        requeued = requeued + 1
      else
        redis.call('HSET', state, 's', 'Failed', 'e', ARGV[4], 'da', stamp, 'ua', stamp)
        finished(T, id, jname, 'Failed', now, ttl)
        tally(T, 'f', now, 1)
      end
    end
    local job = job_reply(T, id)
    recovered[#recovered + 1] = {id, job[1], job[2]}
  end
end
wake(T, requeued)
return recovered
