-- page: one queue's part of a page of jobs in one status, read from the status's index, after a
-- position (exclusive) in the list's order.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] the list: 'Queued' (T:ready in claim order, leaving out the Scheduled jobs moved there),
--         'Scheduled' (T:due and T:sched merged, soonest due first) or a finished status
--         (T:done:<status>, newest first)
-- ARGV[2] the position's score ('' = from the start)   ARGV[3] the position's member
-- ARGV[4] how many jobs   ARGV[5] only jobs of this name as JSON ('' = every name)
-- ARGV[6] the most index entries to look at
-- Returns {more, frontier score, frontier member, score, member, ...}: the jobs' positions in order
-- (the job id is the member, or the member's id part for queue members); `more` is 'more' when the
-- list goes on after the last one, 'frontier' when the walk stopped at its budget (the list goes on
-- after the frontier, the last entry looked at), else 'end'.
--
-- A position is found in O(log n) by adding a probe member just after it and asking its rank (the
-- probe is taken out again at once): ZADD, ZRANK, ZREM.
local CHUNK = 100
local T = KEYS[1]
local list = ARGV[1]
local after_score, after_member = ARGV[2], ARGV[3]
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[6])
local name = ARGV[5]

-- The number of entries of `key` that sort at or before (score, member), ascending.
local function upto(key, score, member)
  local probe = member .. '\0'
  redis.call('ZADD', key, score, probe)
  local rank = redis.call('ZRANK', key, probe)
  redis.call('ZREM', key, probe)
  return rank
end

-- A source walks one sorted set in the list's order, CHUNK entries at a time.
local function source(key, descending)
  local s = {key = key, buffer = {}, at = 1, done = false}
  if descending then
    local stop = redis.call('ZCARD', key)
    if after_score ~= '' then
      stop = upto(key, after_score, after_member)
      if tonumber(redis.call('ZSCORE', key, after_member)) == tonumber(after_score) then
        stop = stop - 1
      end
    end
    s.stop = stop
  else
    s.next = after_score ~= '' and upto(key, after_score, after_member) or 0
  end
  function s.peek()
    if s.at > #s.buffer then
      if s.done then
        return nil
      end
      s.buffer, s.at = {}, 1
      local raw
      if descending then
        if s.stop <= 0 then
          s.done = true
          return nil
        end
        local first = math.max(0, s.stop - CHUNK)
        raw = redis.call('ZRANGE', key, first, s.stop - 1, 'WITHSCORES')
        s.stop = first
        for i = #raw - 1, 1, -2 do
          s.buffer[#s.buffer + 1] = {raw[i + 1], raw[i]}
        end
      else
        raw = redis.call('ZRANGE', key, s.next, s.next + CHUNK - 1, 'WITHSCORES')
        s.next = s.next + CHUNK
        for i = 1, #raw, 2 do
          s.buffer[#s.buffer + 1] = {raw[i + 1], raw[i]}
        end
      end
      if #raw < 2 * CHUNK then
        s.done = true
      end
      if #s.buffer == 0 then
        return nil
      end
    end
    return s.buffer[s.at]
  end
  return s
end

local sources
if list == 'Queued' then
  sources = {source(T .. ':ready', false)}
elseif list == 'Scheduled' then
  sources = {source(T .. ':due', false), source(T .. ':sched', false)}
else
  sources = {source(T .. ':done:' .. list, true)}
end
local descending = list ~= 'Queued' and list ~= 'Scheduled'
local moved = list == 'Queued' and redis.call('ZCARD', T .. ':due') > 0

-- The next entry of the merged sources, in the list's order.
local function take()
  local best, best_source
  for _, s in ipairs(sources) do
    local entry = s.peek()
    if entry then
      local better = not best
      if best then
        local a, b = tonumber(entry[1]), tonumber(best[1])
        if descending then
          better = a > b or (a == b and entry[2] > best[2])
        else
          better = a < b or (a == b and entry[2] < best[2])
        end
      end
      if better then
        best, best_source = entry, s
      end
    end
  end
  if best_source then
    best_source.at = best_source.at + 1
  end
  return best
end

local out = {}
local found, looked = 0, 0
local state, last = 'end', nil
while true do
  if looked >= budget then
    state = 'frontier'
    break
  end
  local entry = take()
  if not entry then
    break
  end
  looked = looked + 1
  last = entry
  local id = entry[2]
  if not descending then
    id = queued_id(entry[2])
  end
  local keep = id ~= nil
  if keep and moved and redis.call('ZSCORE', T .. ':due', entry[2]) then
    keep = false
  end
  if keep and name ~= '' then
    local _, _, _, jname = parse_record(redis.call('GET', T .. ':j:' .. id))
    keep = jname == name
  end
  if keep then
    if found == limit then
      state = 'more'
      break
    end
    found = found + 1
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2]
  end
end
if state == 'frontier' then
  return {state, last[1], last[2], unpack(out)}
end
return {state, '', '', unpack(out)}
