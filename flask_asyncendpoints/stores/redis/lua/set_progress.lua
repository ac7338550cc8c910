-- set_progress: record the progress of the attempt holding the lease.
-- KEYS[1] job hash
-- ARGV[1] now ('' = the server's clock)   ARGV[2] token
-- ARGV[3] fraction as JSON   ARGV[4] message as JSON (a string or null)
-- Returns 1, or 0 when the token does not hold the lease (nothing changes).
local key = KEYS[1]
if not held(key, ARGV[2]) then
  return 0
end
local now = clock(ARGV[1])
local progress = '{"fraction":' .. ARGV[3] .. ',"message":' .. ARGV[4] .. ',"updatedAt":' .. exact(now) .. '}'
redis.call('HSET', key, 'pg', progress, 'ua', now)
return 1
