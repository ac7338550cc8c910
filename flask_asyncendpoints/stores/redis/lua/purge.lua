-- purge: delete up to `limit` finished jobs of one queue whose result ttl has run out, with their
-- history, logs and every index entry.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] limit
-- Returns the ids deleted.
local T = KEYS[1]
local exp = T .. ':exp'
local ids = redis.call('ZRANGEBYSCORE', exp, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local deleted = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', exp, id)
  local state = T .. ':s:' .. id
  local status = redis.call('HGET', state, 's')
  if FINAL[status] then
    local _, _, _, jname = parse_record(redis.call('GET', T .. ':j:' .. id))
    redis.call('DEL', T .. ':j:' .. id, state, T .. ':l:' .. id)
    redis.call('ZREM', T .. ':done:' .. status, id)
    count(T, FINAL[status] .. (jname or '""'), -1)
    deleted[#deleted + 1] = id
  end
end
return deleted
