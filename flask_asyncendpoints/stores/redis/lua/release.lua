-- release: give a claimed job back untouched (at shutdown): Queued, due now, no retry counted. A job
-- with a cancel requested becomes Canceled instead (the cancel rule), expiring after the ttl its
-- cancel gave.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] job id   ARGV[3] attempt id   ARGV[4] history limit   ARGV[5] sequence (6 digits)
-- Returns 1, or 0 when the attempt does not hold the lease (nothing changes).
local T = KEYS[1]
local now = tonumber(ARGV[1])
local id, member = ARGV[2], ARGV[3] .. ':' .. ARGV[2]
local run = T .. ':run'
local score = tonumber(redis.call('ZSCORE', run, member))
if not score then
  return 0
end
redis.call('ZREM', run, member)
local ca, mr, sortkey, jname = parse_record(redis.call('GET', T .. ':j:' .. id))
local state = T .. ':s:' .. id
local f = redis.call('HMGET', state, 'rc', 'sa', 'w', 'h', 'ct')
local limit = tonumber(ARGV[4])
if score < 0 or not ca then
  cancel_attempt(T, id, jname or '""', f, now, tonumber(f[5]), limit, 'null', 'null')
  return 1
end
local stamp = exact(now)
local queued = requeue_member(sortkey, now, ARGV[5], id)
local h = add_history(f[4], attempt_record((tonumber(f[1]) or 0) + 1, f[2], stamp, f[3], 'Released', 'null', 'null'),
  limit)
if h then
  redis.call('HSET', state, 'h', h)
end
redis.call('HSET', state, 's', 'Queued', 'ua', stamp, 'q', queued)
redis.call('ZADD', T .. ':ready', 0, queued)
count(T, 'Q' .. jname, 1)
wake(T, 1)
return 1
