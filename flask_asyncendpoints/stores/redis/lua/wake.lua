-- wake: push wake tokens (or, on a cluster, publish a wake-up) for idle workers of one queue.
-- KEYS[1] the queue's hash tag T (see common.lua)
-- ARGV[1] how many workers to wake
-- Returns 1.
wake(KEYS[1], tonumber(ARGV[1]))
return 1
