-- set_progress: record the progress of the attempt holding its lease.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] job id   ARGV[3] attempt id   ARGV[4] fraction as JSON
-- ARGV[5] message as JSON (a string or null)
-- Returns 1, or 0 when the attempt does not hold the lease (nothing changes).
local T = KEYS[1]
if not redis.call('ZSCORE', T .. ':run', ARGV[3] .. ':' .. ARGV[2]) then
  return 0
end
local stamp = exact(tonumber(ARGV[1]))
local progress = '{"fraction":' .. ARGV[4] .. ',"message":' .. ARGV[5] .. ',"updatedAt":' .. stamp .. '}'
redis.call('HSET', T .. ':s:' .. ARGV[2], 'pg', progress, 'ua', stamp)
return 1
