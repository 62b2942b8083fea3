-- Returns a started job to the head of its queue without using an attempt: the job's worker
-- could not reach PostgreSQL or Redis (an outage, not the job's fault). Removing the
-- started-registry entry is the claim, as in recover_one.lua: a sweeper that judged the job
-- abandoned first has moved it on, and then this does nothing. retries_left is left untouched.
-- KEYS: started registry, job hash, queue list, stats hash, execution hash, worker executions.
-- ARGV: registry entry (job:execution), job id, service that was down, now (ISO-8601).
-- Returns 1 if returned, 0 if the entry was gone.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'status', 'queued')
redis.call('HDEL', KEYS[2], 'worker_name', 'started_at')
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'outages', 1)
redis.call('HSET', KEYS[4], 'last_outage', ARGV[3] .. ' at ' .. ARGV[4])
redis.call('DEL', KEYS[5])
redis.call('SREM', KEYS[6], ARGV[1])
return 1
