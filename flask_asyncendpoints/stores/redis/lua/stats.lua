-- stats: one queue's counts, how many of its jobs are due, and when the one waiting longest became due.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now
-- Returns {ready, moved, scheduled, running, completed, failed, canceled, due, oldest due time or ''}:
-- Queued = ready - moved, Scheduled = scheduled + moved (T:ready holds the Scheduled jobs moved there).
local MAX_BANDS = 64
local T = KEYS[1]
local now = tonumber(ARGV[1])
local ready = T .. ':ready'
local counts = {
  redis.call('ZCARD', ready),
  redis.call('ZCARD', T .. ':due'),
  redis.call('ZCARD', T .. ':sched'),
  redis.call('ZCARD', T .. ':run'),
  redis.call('ZCARD', T .. ':done:Completed'),
  redis.call('ZCARD', T .. ':done:Failed'),
  redis.call('ZCARD', T .. ':done:Canceled'),
}
counts[8] = counts[1] + redis.call('ZCOUNT', T .. ':sched', '-inf', now)
-- Each priority's first member is its longest waiting job: look at the first of each band.
local oldest
local head = redis.call('ZRANGE', ready, 0, 0)
local bands = 0
while #head > 0 and bands < MAX_BANDS do
  local due = tonumber(string.sub(head[1], 11, 26))
  if due and (not oldest or due < oldest) then
    oldest = due
  end
  bands = bands + 1
  head = redis.call('ZRANGEBYLEX', ready, '(' .. string.sub(head[1], 1, 10) .. ':', '+', 'LIMIT', 0, 1)
end
local first = redis.call('ZRANGE', T .. ':sched', 0, 0, 'WITHSCORES')
if #first > 0 and tonumber(first[2]) <= now then
  local due = tonumber(first[2]) * 1000000
  if not oldest or due < oldest then
    oldest = due
  end
end
counts[9] = oldest and exact(oldest / 1000000) or ''
return counts
