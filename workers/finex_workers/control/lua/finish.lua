-- Records a job's success in one round trip: the worker's hot path, the twin of claim.lua.
-- It writes exactly what RQ's own worker writes for a success without dependents
-- (Worker.handle_job_success: Job._handle_success, Result.save, FinishedJobRegistry.add,
-- Job.cleanup, cleanup_execution, the worker's counters and state), plus our finex:stats
-- counter, atomically. Jobs with dependents, callbacks, repeats, rate limits, webhooks or a
-- result_ttl of 0 take RQ's own code instead.
-- KEYS: job hash, results stream, finished registry, execution hash, started registry,
--       executions registry, worker hash, worker executions set, finex stats hash,
--       job dependents set, job dependencies set.
-- ARGV: job id, ended_at (RQ's UTC format), result ttl (seconds, -1 = keep), finished score,
--       execution composite (<job>:<execution>), execution id, seconds worked,
--       then the result's fields and values (Result.serialize()).
-- Returns 1 when it recorded the success, 0 when the execution was settled before, -1 when the
-- job has dependents (recorded nothing: the worker takes RQ's own path, which releases them).
-- Once: an execution no longer in the started registry was settled already (a retry of this
-- script after Redis dropped its reply, or a sweep that judged the worker dead). Returns 0 then.
-- Dependents are looked at here, at the finish, not only at the claim: a dependent enqueued
-- while the job ran is in the set now. One enqueued after this script is not stranded either:
-- RQ's enqueue WATCHes the parent's hash, sees it finished, and enqueues the child itself.
if not redis.call('ZSCORE', KEYS[5], ARGV[5]) then return 0 end
if redis.call('EXISTS', KEYS[10]) == 1 then return -1 end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'finished', 'ended_at', ARGV[2], 'last_heartbeat', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10', '*', unpack(ARGV, 8))
if ttl == -1 then redis.call('PERSIST', KEYS[2]) else redis.call('EXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[10], ttl)
  redis.call('EXPIRE', KEYS[11], ttl)
end
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[5])
redis.call('ZREM', KEYS[6], ARGV[6])
redis.call('SREM', KEYS[8], ARGV[5])
redis.call('HINCRBY', KEYS[7], 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', KEYS[7], 'total_working_time', ARGV[7])
redis.call('HSET', KEYS[7], 'state', 'idle')
redis.call('HINCRBY', KEYS[9], 'completed', 1)
return 1
