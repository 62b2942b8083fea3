-- Returns a started job to its queue without using an attempt: the job's worker could not
-- reach PostgreSQL or Redis (an outage, not the job's fault). Removing the started-registry
-- entry is the claim, as in recover_one.lua: a sweeper that judged the job abandoned first has
-- moved it on, and then this does nothing. retries_left is left untouched.
-- The job goes to the tail, behind the jobs queued meanwhile: a job that keeps coming back
-- never holds the head. Returns per job are capped (the job hash's finex_outage_returns); at
-- the cap nothing is changed and the worker fails the job as any other failure.
-- KEYS: started registry, job hash, queue list, stats hash, execution hash, worker executions.
-- ARGV: registry entry (job:execution), job id, service that was down, now (ISO-8601),
--       most returns allowed per job.
-- Returns 1 if returned, 0 if the entry was gone, 2 if the job was returned too often already.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local returned = tonumber(redis.call('HGET', KEYS[2], 'finex_outage_returns') or '0')
if returned >= tonumber(ARGV[5]) then return 2 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'status', 'queued', 'finex_outage_returns', returned + 1)
redis.call('HDEL', KEYS[2], 'worker_name', 'started_at')
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'outages', 1)
redis.call('HSET', KEYS[4], 'last_outage', ARGV[3] .. ' at ' .. ARGV[4])
redis.call('DEL', KEYS[5])
redis.call('SREM', KEYS[6], ARGV[1])
return 1
