-- append_logs: add lines to a job's execution log while the attempt holds its lease, keeping at most
-- `max lines` lines and `max bytes` bytes of messages, the oldest dropped first.
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
local added = 0
for a = 5, #ARGV, 2 do
  local size = tonumber(ARGV[a])
  if size <= max_bytes then
    lines[#lines + 1] = ARGV[a] .. '\t' .. ARGV[a + 1]
    added = added + size
  end
end
if #lines == 0 or max_lines <= 0 then
  return 1
end
local total = (tonumber(redis.call('HGET', state, 'lb')) or 0) + added
local length = 0
for first = 1, #lines, 1000 do
  length = redis.call('RPUSH', key, unpack(lines, first, math.min(first + 999, #lines)))
end
while length > max_lines or total > max_bytes do
  local oldest = redis.call('LPOP', key)
  if not oldest then
    total = 0
    break
  end
  total = total - (tonumber(string.match(oldest, '^(%d+)\t')) or 0)
  length = length - 1
end
redis.call('HSET', state, 'lb', total)
return 1
