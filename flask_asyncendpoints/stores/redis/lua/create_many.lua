-- create_many: `create` for several jobs in one call, each on its own (idempotent on its id, held
-- to the pending limit as it stands when its turn comes), then one wake-up token per job created.
-- KEYS[1] queue   KEYS[2] counts   KEYS[3] wake list   KEYS[4..] the job hashes, in ARGV order
-- ARGV[1] now ('' = the server's clock)   ARGV[2] max pending ('' = no limit)
-- ARGV[3..] job id, name, max retries, payload JSON of each job, in turn
-- Returns, for each job in order, what `create` returns for it.
local queue, counts = KEYS[1], KEYS[2]
local now = clock(ARGV[1])
local max_pending = tonumber(ARGV[2])
local replies = {}
local created = 0
for i = 4, #KEYS do
  local a = 4 * (i - 4) + 3
  local reply = create_one(KEYS[i], queue, counts, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], now, max_pending)
  if reply[1] == 1 then
    created = created + 1
  end
  replies[#replies + 1] = reply
end
if created > 0 then
  push_wake(KEYS[3], created)
end
return replies
