-- complete_many: complete several attempts, each checked against its own lease as by `complete`.
-- KEYS[1] in progress   KEYS[2] expiring   KEYS[3] counts   KEYS[4..] the job hashes, in ARGV order
-- ARGV[1] now ('' = the server's clock)   ARGV[2] result ttl in seconds ('' = keep the jobs)
-- ARGV[3..] job id, token, result JSON of each attempt, in turn
-- Returns, for each attempt in order, 0 when its token does not hold the lease, else
-- {completedAt, progress JSON or '', '1' if a cancel was requested else ''}: with the claimed job,
-- all the caller needs to know the completed job without reading it back.
return complete_batch()
