-- renew: extend the leases of running attempts of one queue.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] lease seconds   ARGV[3..] job id and attempt id of each lease, in turn
-- Returns one state per lease, in order: 0 lost, 1 held, 2 held and a cancel was requested.
-- A lease that ran out is lost even before recover takes the job back.
local T = KEYS[1]
local run = T .. ':run'
local now = tonumber(ARGV[1])
local lease_until = now + tonumber(ARGV[2])
local states = {}
for a = 3, #ARGV, 2 do
  local member = ARGV[a + 1] .. ':' .. ARGV[a]
  local score = tonumber(redis.call('ZSCORE', run, member))
  local state = 0
  if score and math.abs(score) >= now then
    if score < 0 then
      redis.call('ZADD', run, 'XX', -lease_until, member)
      state = 2
    else
      redis.call('ZADD', run, 'XX', lease_until, member)
      state = 1
    end
  end
  states[#states + 1] = state
end
return states
