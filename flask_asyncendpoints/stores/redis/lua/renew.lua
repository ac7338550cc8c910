-- renew: extend the leases of running attempts.
-- KEYS[1]     in progress   {prefix}:jobs:inprogress
-- KEYS[2..n]  the job hashes, one per lease
-- ARGV[1] now ('' = the server's clock)   ARGV[2] lease seconds
-- ARGV[1 + 2i], ARGV[2 + 2i] the job id and token of lease i (i = 1 .. n - 1)
-- Returns one state per lease, in order: 0 lost, 1 held, 2 held and a cancel was requested.
-- A lease that ran out is lost even before recover takes the job back.
local inprogress = KEYS[1]
local now = clock(ARGV[1])
local lease_until = now + tonumber(ARGV[2])
local states = {}

for i = 1, #KEYS - 1 do
  local key, id, token = KEYS[i + 1], ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  local state = 0
  local expires = tonumber(redis.call('ZSCORE', inprogress, id))
  if held(key, token) and expires and expires >= now then
    redis.call('ZADD', inprogress, lease_until, id)
    state = 1
    if redis.call('HGET', key, 'cr') == '1' then
      state = 2
    end
  end
  states[i] = state
end
return states
