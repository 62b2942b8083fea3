-- Takes over a scheduler lock from a scheduler judged dead, atomically: only if the lock still
-- names that dead owner (a live scheduler that refreshed or took it meanwhile keeps it).
-- KEYS: the lock. ARGV: the dead owner, the new owner, TTL in seconds.
-- Returns 1 if taken over (or the lock was free and is now ours), 0 if someone else holds it.
local value = redis.call('GET', KEYS[1])
if value and value ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
