-- append_logs: add lines to a job's execution log while the attempt holds its lease, then drop the
-- oldest lines until at most `max lines` lines and `max bytes` bytes of messages are left (so a line
-- longer than `max bytes` on its own is not kept, nor is anything before it).
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] job id   ARGV[2] attempt id   ARGV[3] max lines   ARGV[4] max bytes
-- ARGV[5..] for each line, in turn: its message's length in bytes, its LogRecord JSON
-- Returns 1, or 0 when the attempt does not hold the lease (nothing is stored).
local T = KEYS[1]
local id = ARGV[1]
if not redis.call('ZSCORE', T .. ':run', ARGV[2] .. ':' .. id) then
  return 0
end
local max_lines, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local key, state = T .. ':l:' .. id, T .. ':s:' .. id
local lines = {}
local total = tonumber(redis.call('HGET', state, 'lb')) or 0
for a = 5, #ARGV, 2 do
  lines[#lines + 1] = ARGV[a] .. '\t' .. ARGV[a + 1]
  total = total + tonumber(ARGV[a])
end
if #lines == 0 then
  return 1
end
local length = 0
for first = 1, #lines, 1000 do
  length = redis.call('RPUSH', key, unpack(lines, first, math.min(first + 999, #lines)))
end
-- Count the oldest lines to drop, reading them 100 at a time, then drop them with one LTRIM.
local drop = 0
while length - drop > max_lines or total > max_bytes do
  local chunk = redis.call('LRANGE', key, drop, drop + 99)
  if #chunk == 0 then
    break
  end
  for _, line in ipairs(chunk) do
    if length - drop <= max_lines and total <= max_bytes then
      break
    end
    total = total - (tonumber(string.match(line, '^(%d+)\t')) or 0)
    drop = drop + 1
  end
end
if drop >= length then
  redis.call('DEL', key)
  total = 0
elseif drop > 0 then
  redis.call('LTRIM', key, drop, -1)
end
redis.call('HSET', state, 'lb', total)
return 1
