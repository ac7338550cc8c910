-- await: read a job for a long-poll and, while it has not finished, note the wait (T:waits), so the
-- script that finishes it pushes a token to T:f:<id>, the list the long-poll blocks on next.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] job id   ARGV[2] now   ARGV[3] when the wait ends at the latest (epoch seconds)
-- ARGV[4] '1' when this runs behind the long-poll's BLPOP on T:f:<id>: a finished job's token is
-- then put back for the job's other long-polls, which block on the same list
-- Returns {record, state fields}, or {record} for a pointer to another queue (nothing noted), or
-- nil when there is no such job.
local T, id = KEYS[1], ARGV[1]
local record = redis.call('GET', T .. ':j:' .. id)
if not record then
  return nil
end
if string.sub(record, 1, 1) == '@' then
  return {record}
end
local state = redis.call('HGETALL', T .. ':s:' .. id)
local status
for i = 1, #state, 2 do
  if state[i] == 's' then
    status = state[i + 1]
  end
end
local waits = T .. ':waits'
if FINAL[status] then
  if ARGV[4] == '1' then
    local tokens = T .. ':f:' .. id
    if redis.call('LLEN', tokens) == 0 then
      redis.call('RPUSH', tokens, '1')
      redis.call('EXPIRE', tokens, FINISH_TOKEN_TTL)
    end
  end
else
  -- Waits that ended without their job finishing go first, so T:waits holds the live ones.
  redis.call('ZREMRANGEBYSCORE', waits, '-inf', '(' .. ARGV[2])
  redis.call('ZADD', waits, 'GT', ARGV[3], id)
end
return {record, state}
