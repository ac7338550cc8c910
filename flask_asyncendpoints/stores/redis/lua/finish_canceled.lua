-- finish_canceled: end the attempt holding its lease as Canceled (it stopped on a cancel request).
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] now   ARGV[2] job id   ARGV[3] attempt id   ARGV[4] result ttl ('' = keep the job)
-- ARGV[5] history limit
-- Returns {record, state fields}, or nil when the attempt does not hold the lease (nothing changes).
local T = KEYS[1]
local id, member = ARGV[2], ARGV[3] .. ':' .. ARGV[2]
local run = T .. ':run'
if not redis.call('ZSCORE', run, member) then
  return nil
end
redis.call('ZREM', run, member)
local _, _, _, jname = parse_record(redis.call('GET', T .. ':j:' .. id))
local f = redis.call('HMGET', T .. ':s:' .. id, 'rc', 'sa', 'w', 'h')
cancel_attempt(T, id, jname or '""', f, tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5]), 'null', 'null')
return job_reply(T, id)
