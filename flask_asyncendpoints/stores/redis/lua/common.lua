-- Helpers shared by every script in this directory. The store prepends to each script (after a
-- first line `local CLUSTER = true|false`) the paragraphs of this file that define what the script
-- uses, directly or through another helper, when it registers it (scripts.py, used_definitions), so
-- each script is one self-contained EVAL and this file is never run alone. Keep one definition (or
-- a few that belong together) per paragraph, paragraphs apart by a blank line, and `--` out of strings.
--
-- Every script works on the keys of one queue. KEYS[1] is the queue's hash tag T = `{prefix:queue}`
-- and every key is T followed by a suffix, all in one Redis Cluster slot:
--   T:j:<id>    string  the job as created: `<createdAt>\t<maxRetries>\t<sort key>\t<name as JSON>\t<payload JSON>`
--                       (in the default queue, `@<queue>` points to a job that lives in another queue)
--   T:s:<id>    hash    what changed since (absent until the first change); fields, absent when null:
--                 s  status (absent: Queued)       rc retryCount (absent: 0)   ua lastUpdatedAt (absent: createdAt)
--                 sa startedAt   da completedAt    rd retryDelayUntil          (timestamps are epoch seconds)
--                 r  result JSON e  error JSON     pg progress JSON
--                 cr "1" while a cancel is requested, ct the result ttl that cancel gave ('' keeps the job)
--                 w  the worker id of the last claim, as JSON    t  the last claim's attempt id
--                 q  the job's queue member when it was queued again (absent: `<sort key of j>:<id>`)
--                 h  the attempt history: JSON arrays [number, startedAt, finishedAt, workerId, outcome,
--                    errorCode, errorMessage], one per line, oldest first (a Completed job's last attempt
--                    is not written: it is read from sa, da and w)
--                 lb bytes of log messages kept
--   T:l:<id>    list    log lines `<message bytes>\t<LogRecord JSON>`
--   T:ready     zset    due jobs (Queued, and Scheduled ones whose time came), all scored 0; members
--                       `<sort key>:<id>` sort in claim order (see keys.py)
--   T:sched     zset    Scheduled jobs not yet due, by due time (same members)
--   T:due       zset    Scheduled jobs moved to T:ready, by due time (same members)
--   T:run       zset    running attempts `<attempt>:<id>`, scored by lease expiry (negated while a
--                       cancel is requested)
--   T:done:<status>     zset  Completed, Failed and Canceled job ids by completedAt
--   T:exp       zset    finished job ids that have a result ttl, by purge time
--   T:names     hash    jobs per job name: `<Q|S|C|F|X><name as JSON>` -> count (Queued, Scheduled,
--                       Completed, Failed, Canceled; InProgress ones are read from T:run)
--   T:wake      list    wake tokens idle workers block on (a single server; a cluster publishes them)
--   T:tp:<hour> hash    jobs that ended in each minute of an hour: `c<minute>`, `f<minute>`
--   T:waits     zset    ids of jobs a long-poll waits for, by when that wait ends at the latest
--   T:f:<id>    list    a token pushed when a job of T:waits finishes; its long-polls block on it
-- and the channels T:cancels (`<origin> <id>`) and, on a cluster, T:wake (sharded).
--
-- Every `now` is given by the caller (epoch seconds, the server's clock as the store reads it), so
-- no script spends a TIME call; only a claim sent behind a worker's blocking wait, which runs when
-- the wait ends, reads TIME itself (claim.lua).
--
-- Numbers go to redis.call as text wherever a script has them as text or can make the text once
-- ('0', exact(now) for a batch): Redis 7.0 turns each Lua number argument into text with printf's
-- %.17g, a couple of thousand instructions, as much as half the command it is for.

local PUBLISH = CLUSTER and 'SPUBLISH' or 'PUBLISH'

-- Tokens kept in the wake list at most, and how long an unconsumed token lives (seconds).
local WAKE_MAX = 64
local WAKE_TTL = '60'

-- Creates wake a worker while at most this many jobs of the name are queued: idle workers are only
-- idle while nothing is queued, and a longer backlog means every worker is busy with it anyway.
local WAKE_BELOW = 64

-- Seconds a finish token lives once pushed: long enough for every long-poll of the job to pass it on.
local FINISH_TOKEN_TTL = '10'

-- Seconds a throughput hash outlives its hour.
local THROUGHPUT_TTL = '90000'

local FINAL = {Completed = 'C', Failed = 'F', Canceled = 'X'}

local STATUS_CHAR = {Queued = 'Q', Scheduled = 'S', Completed = 'C', Failed = 'F', Canceled = 'X'}

-- A number as text without losing precision (tostring and `..` keep only 14 digits).
local function exact(x)
  return string.format('%.17g', x)
end

-- createdAt, maxRetries, sort key, name JSON of a job record, or nil for a pointer or anything else.
local function parse_record(rec)
  if not rec then
    return nil
  end
  local _, _, ca, mr, sortkey, jname = string.find(rec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t')
  if not ca or not tonumber(mr) then
    return nil
  end
  return ca, tonumber(mr), sortkey, jname
end

-- The member that puts a job with `sortkey`'s priority back in its queue, due at `due`.
local function requeue_member(sortkey, due, seq, id)
  return string.sub(sortkey, 1, 10) .. string.format('%016.0f', due * 1000000) .. seq .. 'r:' .. id
end

-- The job's current queue member: its state's `q`, else the one it was created with.
local function current_member(q, sortkey, id)
  return q or (sortkey .. ':' .. id)
end

-- The job id of a queue or run member, or nil when the member is not one this library writes.
local function queued_id(member)
  return string.match(member, '^%d+[nr]:(.+)$')
end

local function running_id(member)
  return string.match(member, '^[^:]+:(.+)$')
end

local function count(T, field, n)
  if n ~= 0 then
    redis.call('HINCRBY', T .. ':names', field, string.format('%d', n))
  end
end

-- Add `n` jobs that ended `kind` ('c' completed, 'f' failed) at `now` to the throughput of their minute.
local function tally(T, kind, now, n)
  if n <= 0 then
    return
  end
  local key = T .. ':tp:' .. string.format('%d', math.floor(now / 3600))
  local field = kind .. string.format('%d', math.floor((now % 3600) / 60))
  if redis.call('HINCRBY', key, field, n) == n then
    redis.call('EXPIRE', key, THROUGHPUT_TTL)
  end
end

-- Wake up to `n` idle workers of the queue.
local function wake(T, n)
  n = math.min(n, WAKE_MAX)
  if n < 1 then
    return
  end
  if CLUSTER then
    redis.call('SPUBLISH', T .. ':wake', n)
    return
  end
  local key = T .. ':wake'
  local tokens = {}
  for i = 1, n do
    tokens[i] = '1'
  end
  local length = redis.call('RPUSH', key, unpack(tokens))
  if length == n then
    redis.call('EXPIRE', key, WAKE_TTL)
  elseif length > WAKE_MAX then
    -- Nobody is waiting: keep one token rather than trim on every push.
    redis.call('LTRIM', key, 0, 0)
  end
end

-- redis.call(command, key, ...items) in pieces small enough for unpack (Lua's stack is limited);
-- `step` must be a multiple of the items that belong together (2 for score, member pairs).
local function call_unpacked(command, key, items, step)
  for first = 1, #items, step do
    redis.call(command, key, unpack(items, first, math.min(first + step - 1, #items)))
  end
end

-- One attempt record of the history (see T:s:<id> above); `worker`, `code` and `message` are JSON.
local function attempt_record(number, started, finished, worker, outcome, code, message)
  return '[' .. number .. ',' .. (started or finished) .. ',' .. finished .. ',' .. (worker or '""') .. ',"'
    .. outcome .. '",' .. code .. ',' .. message .. ']'
end

-- The history `h` with `record` added, keeping the last `limit` records; nil when it keeps none.
local function add_history(h, record, limit)
  if limit <= 0 then
    return nil
  end
  local out = h and (h .. '\n' .. record) or record
  local n = 1
  for _ in string.gmatch(out, '\n') do
    n = n + 1
  end
  while n > limit do
    out = string.sub(out, string.find(out, '\n', 1, true) + 1)
    n = n - 1
  end
  return out
end

-- Wake the long-polls waiting for the jobs `ids`, which just finished: a token in each waited job's
-- list T:f:<id>, which they block on. One call when nobody waits.
local function tell_waiters(T, ids)
  local waits = T .. ':waits'
  local scores = redis.call('ZMSCORE', waits, unpack(ids))
  local told = {}
  for i = 1, #ids do
    if scores[i] then
      local tokens = T .. ':f:' .. ids[i]
      redis.call('RPUSH', tokens, '1')
      redis.call('EXPIRE', tokens, FINISH_TOKEN_TTL)
      told[#told + 1] = ids[i]
    end
  end
  if #told > 0 then
    redis.call('ZREM', waits, unpack(told))
  end
end

-- Index a job that just finished with `status` at `now`: its status index, its purge time (never
-- without a ttl) and its name's count; long-polls waiting for it are told.
local function finished(T, id, jname, status, now, ttl)
  redis.call('ZADD', T .. ':done:' .. status, now, id)
  if ttl then
    redis.call('ZADD', T .. ':exp', now + ttl, id)
  end
  count(T, FINAL[status] .. jname, 1)
  tell_waiters(T, {id})
end

-- The job as a reply: {record, state fields}.
local function job_reply(T, id)
  return {redis.call('GET', T .. ':j:' .. id), redis.call('HGETALL', T .. ':s:' .. id)}
end

-- End the running attempt `member` of job `id` as Canceled (the cancel rule): `code` and `message`
-- (JSON) are the attempt's own error, kept in its record only. The lease is already taken out of
-- T:run; `f` holds the state's rc, sa, w and h. Returns nothing.
local function cancel_attempt(T, id, jname, f, now, ttl, limit, code, message)
  local stamp = exact(now)
  local state = T .. ':s:' .. id
  local h = add_history(f[4], attempt_record((tonumber(f[1]) or 0) + 1, f[2], stamp, f[3], 'Canceled', code, message),
    limit)
  if h then
    redis.call('HSET', state, 's', 'Canceled', 'da', stamp, 'ua', stamp, 'h', h)
  else
    redis.call('HSET', state, 's', 'Canceled', 'da', stamp, 'ua', stamp)
  end
  finished(T, id, jname, 'Canceled', now, ttl)
end
