-- cancel: Queued and Scheduled jobs become Canceled at once; a running job gets a cancel request,
-- which ends it Canceled however its attempt ends (the cancel rule) and is announced on T:cancels.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] job id   ARGV[3] result ttl ('' = keep the job)   ARGV[4] origin (who asks,
-- so that its own process can skip the announcement it has already acted on)
-- Returns {outcome} or {outcome, record, state fields}; outcome is 'not_found', 'finished' (nothing
-- changed), 'requested', 'canceled', or 'elsewhere' with the record `@<queue>` of a job that lives
-- in another queue (nothing changed).
local T = KEYS[1]
local now = tonumber(ARGV[1])
local id = ARGV[2]
local rec = redis.call('GET', T .. ':j:' .. id)
if not rec then
  return {'not_found'}
end
if string.sub(rec, 1, 1) == '@' then
  return {'elsewhere', rec}
end
local ca, mr, sortkey, jname = parse_record(rec)
local state = T .. ':s:' .. id
local f = redis.call('HMGET', state, 's', 't', 'q')
local status = f[1] or 'Queued'
local stamp = exact(now)
if status == 'InProgress' then
  redis.call('HSET', state, 'cr', '1', 'ct', ARGV[3], 'ua', stamp)
  local member = (f[2] or '') .. ':' .. id
  local score = tonumber(redis.call('ZSCORE', T .. ':run', member))
  if score and score > 0 then
    redis.call('ZADD', T .. ':run', 'XX', -score, member)
  end
  redis.call(PUBLISH, T .. ':cancels', ARGV[4] .. ' ' .. id)
  local job = job_reply(T, id)
  return {'requested', job[1], job[2]}
end
if (status ~= 'Queued' and status ~= 'Scheduled') or not ca then
  local job = job_reply(T, id)
  return {'finished', job[1], job[2]}
end
local member = current_member(f[3], sortkey, id)
redis.call('ZREM', T .. ':ready', member)
redis.call('ZREM', T .. ':sched', member)
redis.call('ZREM', T .. ':due', member)
redis.call('HSET', state, 's', 'Canceled', 'da', stamp, 'ua', stamp)
redis.call('HDEL', state, 'q', 'rd')
count(T, STATUS_CHAR[status] .. jname, -1)
finished(T, id, jname, 'Canceled', now, tonumber(ARGV[3]))
local job = job_reply(T, id)
return {'canceled', job[1], job[2]}
