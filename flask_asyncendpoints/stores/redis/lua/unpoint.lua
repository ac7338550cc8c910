-- unpoint: delete the pointers the default queue keeps to jobs of another queue that are gone.
-- KEYS[1] the default queue's hash tag T (see common.lua)
-- ARGV[1] the other queue   ARGV[2..] the job ids
-- Returns how many pointers were deleted; a record that is not a pointer to that queue is kept.
local T = KEYS[1]
local pointer = '@' .. ARGV[1]
local deleted = 0
for a = 2, #ARGV do
  local key = T .. ':j:' .. ARGV[a]
  if redis.call('GET', key) == pointer then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
