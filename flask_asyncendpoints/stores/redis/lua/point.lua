-- point: write the default queue's pointers to new jobs of another queue, where their records
-- would be, unless the id is taken; written before the jobs themselves.
-- KEYS[1] the default queue's hash tag T (see common.lua)
-- ARGV[1] the other queue   ARGV[2..] the job ids
-- Returns, for each id in order, '' when the pointer was written, else what is there: the same
-- pointer (`@<queue>`, a job of that queue with this id may exist), a pointer to another queue, or
-- the record of a job of the default queue.
local T = KEYS[1]
local pointer = '@' .. ARGV[1]
local olds = {}
for a = 2, #ARGV do
  olds[#olds + 1] = redis.call('SET', T .. ':j:' .. ARGV[a], pointer, 'NX', 'GET') or ''
end
return olds
