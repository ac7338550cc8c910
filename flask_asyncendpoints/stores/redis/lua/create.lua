-- create: store a new Queued job due at once and wake an idle worker; idempotent on the job id.
-- KEYS[1] job hash     {prefix}:job:{id}
-- KEYS[2] queue        {prefix}:jobs:queue
-- KEYS[3] counts       {prefix}:jobs:counts
-- KEYS[4] wake list    {prefix}:jobs:wake
-- ARGV[1] now (epoch seconds; '' = the server's clock)
-- ARGV[2] job id       ARGV[3] name      ARGV[4] max retries     ARGV[5] payload JSON
-- ARGV[6] max pending ('' = no limit)
-- Returns {1, createdAt} when created (the caller knows every other field), {0, job fields} when
-- the id already existed, {-1} when max pending jobs are already Queued, Scheduled or InProgress
-- (nothing is stored).
local reply = create_one(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], clock(ARGV[1]),
  tonumber(ARGV[6]))
if reply[1] == 1 then
  push_wake(KEYS[4], 1)
end
return reply
