-- fail: fail the attempt holding its lease. With retries left and a retry delay the job is
-- Scheduled, retryCount + 1, due `delay` seconds from now, keeping its priority; otherwise it is
-- Failed. The error is kept on the job either way. A job with a cancel requested becomes Canceled
-- instead, the error kept in the attempt's record only (the cancel rule).
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] job id   ARGV[3] attempt id   ARGV[4] error JSON   ARGV[5] error code JSON
-- ARGV[6] error message JSON   ARGV[7] retry delay in seconds ('' = fail for good)
-- ARGV[8] result ttl ('' = keep the job)   ARGV[9] history limit   ARGV[10] sequence (6 digits)
-- Returns {record, state fields}, or nil when the attempt does not hold the lease (nothing changes).
local T = KEYS[1]
local now = tonumber(ARGV[1])
local id, member = ARGV[2], ARGV[3] .. ':' .. ARGV[2]
local run = T .. ':run'
local score = tonumber(redis.call('ZSCORE', run, member))
if not score then
  return nil
end
redis.call('ZREM', run, member)
local ca, mr, sortkey, jname = parse_record(redis.call('GET', T .. ':j:' .. id))
local state = T .. ':s:' .. id
local f = redis.call('HMGET', state, 'rc', 'sa', 'w', 'h')
local ttl, limit = tonumber(ARGV[8]), tonumber(ARGV[9])
if score < 0 or not ca then
  cancel_attempt(T, id, jname or '""', f, now, ttl, limit, ARGV[5], ARGV[6])
  return job_reply(T, id)
end
local stamp = exact(now)
local retries = tonumber(f[1]) or 0
local delay = tonumber(ARGV[7])
local retry = delay and retries < mr
local h = add_history(f[4], attempt_record(retries + 1, f[2], stamp, f[3], retry and 'Retrying' or 'Failed', ARGV[5],
  ARGV[6]), limit)
if h then
  redis.call('HSET', state, 'h', h)
end
if retry then
  local due = now + delay
  local queued = requeue_member(sortkey, due, ARGV[10], id)
  redis.call('HSET', state, 's', 'Scheduled', 'rc', retries + 1, 'rd', exact(due), 'e', ARGV[4], 'ua', stamp, 'q', queued)
  redis.call('ZADD', T .. ':sched', due, queued)
  count(T, 'S' .. jname, 1)
else
  redis.call('HSET', state, 's', 'Failed', 'e', ARGV[4], 'da', stamp, 'ua', stamp)
  finished(T, id, jname, 'Failed', now, ttl)
  tally(T, 'f', now, 1)
end
return job_reply(T, id)
