-- create: store new jobs of one queue, each on its own: idempotent on its id, held to the pending
-- limit as it stands when its turn comes; a job due at once is Queued, a later one Scheduled.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] max pending ('' = no limit)
-- ARGV[2..] for each job, in turn: id, record (T:j:<id>), name as JSON, queue member, due ('' = at once)
-- Returns 1 when every job was created (the caller knows every field), else for each job in order:
-- 1 when created, {0, record, state fields} when the id was taken (a record `@<queue>` points to
-- the job's queue), -1 at the limit (nothing is stored). A table of tables costs the server more to
-- build and to write back than the create's calls: the common answer is a number.
--
-- A job due at once costs four calls: SET NX (the existence check and the write in one), ZADD, the
-- name's count and, while few jobs of the name are queued, a wake-up. Numbers go to redis.call as
-- text ('0', not 0): Redis 7.0 turns a Lua number into a command's argument with printf's %.17g,
-- which costs the server half as much as the ZADD it is for.
local T = KEYS[1]
local max_pending = tonumber(ARGV[1])
local replies = {}
local created_all = true
local woken = 0

for a = 2, #ARGV, 5 do
  local id, rec, jname, member, due = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local key = T .. ':j:' .. id
  local full = false
  if max_pending then
    local pending = redis.call('ZCARD', T .. ':ready') + redis.call('ZCARD', T .. ':sched')
      + redis.call('ZCARD', T .. ':run')
    full = pending >= max_pending
  end
  if full then
    created_all = false
    if redis.call('EXISTS', key) == 1 then
      replies[#replies + 1] = {0, redis.call('GET', key), redis.call('HGETALL', T .. ':s:' .. id)}
    else
      replies[#replies + 1] = -1
    end
  elseif not redis.call('SET', key, rec, 'NX') then
    created_all = false
    replies[#replies + 1] = {0, redis.call('GET', key), redis.call('HGETALL', T .. ':s:' .. id)}
  elseif due then
    local at = exact(due)
    redis.call('HSET', T .. ':s:' .. id, 's', 'Scheduled', 'rd', at)
    redis.call('ZADD', T .. ':sched', at, member)
    count(T, 'S' .. jname, 1)
    replies[#replies + 1] = 1
  else
    redis.call('ZADD', T .. ':ready', '0', member)
    if redis.call('HINCRBY', T .. ':names', 'Q' .. jname, '1') <= WAKE_BELOW then
      woken = woken + 1
    end
    replies[#replies + 1] = 1
  end
end
wake(T, woken)
if created_all then
  return 1
end
return replies
