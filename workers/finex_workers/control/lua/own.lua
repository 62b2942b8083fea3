-- Checks that a worker still owns a running execution before it records the job's outcome
-- through RQ's own (non-atomic) failure or success code, and renews the lease for that step.
-- The stuck-job sweep (recover_one.lua) claims an abandoned job by removing its started-registry
-- entry; if it did, the job was requeued or dead-lettered already and the worker must not
-- record a second outcome (a second retry would queue the job twice). Renewing the entry's
-- score (from Redis's own clock, not the worker's) and the worker's key keeps a sweep from
-- judging the job abandoned while the worker's next round trip records it.
-- KEYS: started registry, worker hash. ARGV: registry entry (job:execution), lease seconds.
-- Returns 1 if the worker still owns the execution, 0 if a sweep took it.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local now = tonumber(redis.call('TIME')[1])
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[2], lease + 60)
return 1
