-- create: store new jobs of one queue, each on its own: idempotent on its id, held to the pending
-- limit as it stands when its turn comes; a job due at once is Queued, a later one Scheduled.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] max pending ('' = no limit)
-- ARGV[3..] for each job, in turn: id, record (T:j:<id>), name as JSON, queue member, due ('' = at once)
-- Returns, for each job in order: {1} when created (the caller knows every field), {0, record,
-- state fields} when the id was taken (a record `@<queue>` points to the job's queue), {-1} at the
-- limit (nothing is stored).
--
-- A job due at once costs four calls: SET NX (the existence check and the write in one), ZADD, the
-- name's count and, while few jobs of the name are queued, a wake-up.
local T = KEYS[1]
local now = tonumber(ARGV[1])
local max_pending = tonumber(ARGV[2])
local replies = {}
local woken = 0

for a = 3, #ARGV, 5 do
  local id, rec, jname, member, due = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local key = T .. ':j:' .. id
  local full = false
  if max_pending then
    local pending = redis.call('ZCARD', T .. ':ready') + redis.call('ZCARD', T .. ':sched')
      + redis.call('ZCARD', T .. ':run')
    full = pending >= max_pending
  end
  if full then
    if redis.call('EXISTS', key) == 1 then
      replies[#replies + 1] = {0, redis.call('GET', key), redis.call('HGETALL', T .. ':s:' .. id)}
    else
      replies[#replies + 1] = {-1}
    end
  elseif not redis.call('SET', key, rec, 'NX') then
    replies[#replies + 1] = {0, redis.call('GET', key), redis.call('HGETALL', T .. ':s:' .. id)}
  elseif due then
    redis.call('HSET', T .. ':s:' .. id, 's', 'Scheduled', 'rd', exact(due))
    redis.call('ZADD', T .. ':sched', due, member)
    count(T, 'S' .. jname, 1)
    replies[#replies + 1] = {1}
  else
    redis.call('ZADD', T .. ':ready', 0, member)
    if redis.call('HINCRBY', T .. ':names', 'Q' .. jname, 1) <= WAKE_BELOW then
      woken = woken + 1
    end
    replies[#replies + 1] = {1}
  end
end
wake(T, woken)
return replies
