-- complete: finish running attempts of one queue with their results, each checked against its own
-- lease. A job with a cancel requested becomes Canceled instead (the cancel rule), its result not kept.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] result ttl ('' = keep the jobs)   ARGV[3] history limit
-- ARGV[4] '1' to answer each finished job whole (else only what the caller cannot know)
-- ARGV[5..] for each attempt, in turn: job id, attempt id, name as JSON ('' = read it), result JSON,
-- '1' when the job has an error to clear ('?' = maybe)
-- Returns, for each attempt in order: 0 when it no longer holds its lease (nothing changes); else 1
-- (Completed at `now`) or {'X', record, state fields} (Canceled), or with ARGV[4] = '1' {'C' or 'X',
-- record, state fields}.
--
-- Per job one HSET; the lease check (ZMSCORE), the indexes, the counts, the throughput and the
-- announcement to long-polls change once per call.
local T = KEYS[1]
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local whole = ARGV[4] == '1'
local stamp = exact(now)
local expires = ttl and exact(now + ttl)
local run = T .. ':run'

local members = {}
for a = 5, #ARGV, 5 do
  members[#members + 1] = ARGV[a + 1] .. ':' .. ARGV[a]
end
local scores = redis.call('ZMSCORE', run, unpack(members))
local replies, held, completed, expiries, counts, ids = {}, {}, {}, {}, {}, {}
for i = 1, #members do
  local a = 5 * i
  local id, jname = ARGV[a], ARGV[a + 2]
  local score = tonumber(scores[i])
  if not score then
    replies[i] = 0
  else
    if jname == '' then
      local _, _, _, name = parse_record(redis.call('GET', T .. ':j:' .. id))
      jname = name or '""'
    end
    local state = T .. ':s:' .. id
    if score < 0 then
      redis.call('ZREM', run, members[i])
      cancel_attempt(T, id, jname, redis.call('HMGET', state, 'rc', 'sa', 'w', 'h'), now, ttl, limit, 'null', 'null')
      local job = job_reply(T, id)
      replies[i] = {'X', job[1], job[2]}
    else
      held[#held + 1] = members[i]
      redis.call('HSET', state, 's', 'Completed', 'r', ARGV[a + 3], 'da', stamp, 'ua', stamp)
      if ARGV[a + 4] ~= '' then
        redis.call('HDEL', state, 'e')
      end
      completed[#completed + 1] = stamp
      completed[#completed + 1] = id
      if ttl then
        expiries[#expiries + 1] = expires
        expiries[#expiries + 1] = id
      end
      ids[#ids + 1] = id
      counts[jname] = (counts[jname] or 0) + 1
      if whole then
        local job = job_reply(T, id)
        replies[i] = {'C', job[1], job[2]}
      else
        replies[i] = 1
      end
    end
  end
end
if #ids > 0 then
  call_unpacked('ZREM', run, held, 1000)
  call_unpacked('ZADD', T .. ':done:Completed', completed, 1000)
  call_unpacked('ZADD', T .. ':exp', expiries, 1000)
  for jname, n in pairs(counts) do
    count(T, 'C' .. jname, n)
  end
  tally(T, 'c', now, #ids)
  tell_waiters(T, ids)
end
return replies
