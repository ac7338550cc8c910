-- claim: lease up to `limit` due jobs of one queue to the caller, in claim order (highest priority
-- first, then the job that became due first).
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now, or '' for the server's TIME   ARGV[2] limit   ARGV[3] lease seconds
-- ARGV[4] nonce (random, unique per call; attempt ids are `<nonce>.<n>`)   ARGV[5] the worker id as JSON
-- Returns {claimed...}, each claimed job as {job id, n, record, retryCount, error JSON or ''}: with
-- the time the caller gave, every field a claimed job has (a claim clears retryDelayUntil, progress
-- and a cancel request, and no waiting job has a result or a completedAt). Without a time it
-- returns {time, {claimed...}}, the time as exact text: a claim sent behind a blocking wait runs
-- when the wait ends, a moment no caller can name in advance.
--
-- Scheduled jobs whose time has come move to T:ready first (their priority is in their member), so
-- a due retry lines up with the queued jobs by priority and due time. A job that was never changed
-- (flag `n`) costs two calls, its record's GET and its state's HSET; the indexes and counts change
-- once per call. A member whose job is missing, corrupt or no longer waiting is dropped and skipped;
-- at most `limit + MAX_SKIPPED` members are looked at per call.
local MAX_SKIPPED = 1000
local MOVE_MAX = 1000
local T = KEYS[1]
local now = tonumber(ARGV[1])
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local limit = tonumber(ARGV[2])
local lease_until = now + tonumber(ARGV[3])
local nonce, worker = ARGV[4], ARGV[5]
local stamp = exact(now)
local lease = exact(lease_until)
local ready = T .. ':ready'

local due = redis.call('ZRANGEBYSCORE', T .. ':sched', '-inf', now, 'WITHSCORES', 'LIMIT', 0, MOVE_MAX)
if #due > 0 then
  local to_ready, to_due, members = {}, {}, {}
  for i = 1, #due, 2 do
    to_ready[#to_ready + 1] = '0'
    to_ready[#to_ready + 1] = due[i]
    to_due[#to_due + 1] = due[i + 1]
    to_due[#to_due + 1] = due[i]
    members[#members + 1] = due[i]
  end
  call_unpacked('ZADD', ready, to_ready, 1000)
  call_unpacked('ZADD', T .. ':due', to_due, 1000)
  call_unpacked('ZREM', T .. ':sched', members, 1000)
end

local claimed, leases, moved, counts = {}, {}, {}, {}
local budget = limit + MAX_SKIPPED
while #claimed < limit and budget > 0 do
  local popped = redis.call('ZPOPMIN', ready, string.format('%d', math.min(limit - #claimed, budget)))
  if #popped == 0 then
    break
  end
  budget = budget - #popped / 2
  for i = 1, #popped, 2 do
    local member = popped[i]
    local id = queued_id(member)
    local rec = id and redis.call('GET', T .. ':j:' .. id)
    local ca, mr, sortkey, jname = parse_record(rec)
    if ca then
      local state = T .. ':s:' .. id
      local status, rc, err, ok = 'Queued', '0', '', true
      if string.sub(member, 33, 33) == 'r' then
        local f = redis.call('HMGET', state, 's', 'rc', 'e', 'pg', 'rd', 'cr', 'q')
        status = f[1] or 'Queued'
        ok = (status == 'Queued' or status == 'Scheduled') and (not f[7] or f[7] == member)
        if ok then
          rc, err = f[2] or '0', f[3] or ''
          local clear = {}
          if f[4] then clear[#clear + 1] = 'pg' end
          if f[5] then clear[#clear + 1] = 'rd' end
          if f[6] then clear[#clear + 1] = 'cr' end
          if #clear > 0 then
            redis.call('HDEL', state, unpack(clear))
          end
          if status == 'Scheduled' then
            moved[#moved + 1] = member
          end
        end
      end
      if ok then
        local n = #claimed + 1
        local attempt = nonce .. '.' .. string.format('%d', n)
        redis.call('HSET', state, 's', 'InProgress', 'sa', stamp, 'ua', stamp, 'w', worker, 't', attempt)
        leases[#leases + 1] = lease
        leases[#leases + 1] = attempt .. ':' .. id
        local field = STATUS_CHAR[status] .. jname
        counts[field] = (counts[field] or 0) + 1
        claimed[n] = {id, n, rec, rc, err}
      end
    end
  end
end
if #claimed > 0 then
  call_unpacked('ZADD', T .. ':run', leases, 1000)
  if #moved > 0 then
    call_unpacked('ZREM', T .. ':due', moved, 1000)
  end
  for field, n in pairs(counts) do
    count(T, field, -n)
  end
end
if ARGV[1] == '' then
  return {stamp, claimed}
end
return claimed
