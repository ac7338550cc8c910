-- wake: push wake tokens for idle workers blocked on the wake list (BLPOP).
-- KEYS[1] wake list {prefix}:jobs:wake
-- ARGV[1] how many tokens to push
-- Returns 1.
push_wake(KEYS[1], tonumber(ARGV[1]))
return 1
