-- requeue: put a Failed job back in its queue, due now, with its retries restored (an operator's
-- retry). The last error stays on the job until an attempt succeeds.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] job id   ARGV[3] sequence (6 digits)
-- Returns {record, state fields}, {'elsewhere', record} for a job of another queue, or nil when the
-- job does not exist or is not Failed (nothing changes).
local T = KEYS[1]
local now = tonumber(ARGV[1])
local id = ARGV[2]
local rec = redis.call('GET', T .. ':j:' .. id)
if rec and string.sub(rec, 1, 1) == '@' then
  return {'elsewhere', rec}
end
local ca, mr, sortkey, jname = parse_record(rec)
local state = T .. ':s:' .. id
if not ca or redis.call('HGET', state, 's') ~= 'Failed' then
  return nil
end
local stamp = exact(now)
local queued = requeue_member(sortkey, now, ARGV[3], id)
redis.call('HSET', state, 's', 'Queued', 'rc', 0, 'ua', stamp, 'q', queued)
redis.call('HDEL', state, 'da', 'rd', 'cr', 'ct', 'pg')
redis.call('ZREM', T .. ':done:Failed', id)
redis.call('ZREM', T .. ':exp', id)
redis.call('ZADD', T .. ':ready', 0, queued)
count(T, 'F' .. jname, -1)
count(T, 'Q' .. jname, 1)
wake(T, 1)
return job_reply(T, id)
