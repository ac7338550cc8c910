-- delete: delete finished jobs of one queue at once, with their history, logs and index entries.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] cutoff: only jobs that finished at or before it (epoch seconds; '' = any)
-- ARGV[2..] the job ids
-- Returns the ids deleted; {'elsewhere', record} when the only id given is a job of another queue.
local T = KEYS[1]
local cutoff = tonumber(ARGV[1])
local deleted = {}
for a = 2, #ARGV do
  local id = ARGV[a]
  local rec = redis.call('GET', T .. ':j:' .. id)
  if rec and string.sub(rec, 1, 1) == '@' and #ARGV == 2 then
    return {'elsewhere', rec}
  end
  local _, _, _, jname = parse_record(rec)
  local state = T .. ':s:' .. id
  local f = redis.call('HMGET', state, 's', 'da')
  local status = f[1]
  if jname and FINAL[status] and (not cutoff or (tonumber(f[2]) or 0) <= cutoff) then
    redis.call('DEL', T .. ':j:' .. id, state, T .. ':l:' .. id)
    redis.call('ZREM', T .. ':done:' .. status, id)
    redis.call('ZREM', T .. ':exp', id)
    count(T, FINAL[status] .. jname, -1)
    deleted[#deleted + 1] = id
  end
end
return deleted
