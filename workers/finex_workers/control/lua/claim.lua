-- Claims the next job of a queue and starts it, in one round trip: the worker's hot path.
-- It writes exactly what RQ's own worker writes when it starts a job (Execution.create,
-- Worker.set_state, Job.prepare_for_execution), so RQ's tools, rq-dashboard and the stuck-job
-- sweep see a job started by RQ. Because the pop and the start are one atomic step, no job is
-- ever popped but not started (so it needs no stop in RQ's intermediate list), and a paused or
-- suspended queue is never popped at all.
-- Idempotent per request: the execution id is the claim's token. redis-py sends the same
-- script again when a reply is lost (a retry on the connection); the first run left the token,
-- so the second returns the job the first claimed instead of claiming (and orphaning) another.
-- KEYS: queue list, finex paused key, rq suspended key, started registry, worker hash,
--       worker executions set, finex stats hash, claim token key.
-- ARGV: job key prefix, execution key prefix, executions registry prefix, execution id,
--       worker name, now (epoch seconds), now (RQ's UTC format), heartbeat ttl, worker ttl.
-- Returns nil (queue empty), {'suspended'}, {'paused'}, {'missing', id} (a job hash that is
-- gone: the id is dropped and counted as `dropped` in finex:stats), {'duplicate', id} (the id
-- was in the queue twice and its job is no longer queued: that copy is dropped, so one job
-- never runs twice at once), or {'job', id, has_dependents, HGETALL of the job hash}.
local claimed = redis.call('GET', KEYS[8])
if claimed then
  return {'job', claimed, redis.call('EXISTS', ARGV[1] .. claimed .. ':dependents'),
    redis.call('HGETALL', ARGV[1] .. claimed)}
end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'suspended'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'paused'} end
local id = redis.call('LPOP', KEYS[1])
if not id then return nil end
local job_key = ARGV[1] .. id
local fields = redis.call('HGETALL', job_key)
if #fields == 0 then
  redis.call('HINCRBY', KEYS[7], 'dropped', 1)
  return {'missing', id}
end
if redis.call('HGET', job_key, 'status') ~= 'queued' then
  redis.call('HINCRBY', KEYS[7], 'duplicates', 1)
  return {'duplicate', id}
end
local now, ttl = tonumber(ARGV[6]), tonumber(ARGV[8])
local composite = id .. ':' .. ARGV[4]
local execution = ARGV[2] .. composite
redis.call('HSET', execution, 'id', ARGV[4], 'job_id', id, 'created_at', ARGV[6],
  'last_heartbeat', ARGV[6], 'worker_name', ARGV[5])
redis.call('EXPIRE', execution, ttl)
local executions = ARGV[3] .. id
redis.call('ZADD', executions, now + ttl + 60, ARGV[4])
redis.call('EXPIRE', executions, ttl + 60)
redis.call('ZADD', KEYS[4], now + ttl, composite)
redis.call('SADD', KEYS[6], composite)
redis.call('EXPIRE', KEYS[6], ttl + 60)
redis.call('HSET', KEYS[5], 'state', 'busy', 'last_heartbeat', ARGV[7])
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[9]))
redis.call('HSET', job_key, 'status', 'started', 'started_at', ARGV[7], 'last_heartbeat', ARGV[7],
  'worker_name', ARGV[5])
redis.call('PERSIST', job_key)
redis.call('SET', KEYS[8], id, 'EX', ttl)
return {'job', id, redis.call('EXISTS', job_key .. ':dependents'), fields}
