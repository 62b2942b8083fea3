-- Claims one abandoned execution and moves its job on, atomically. Removing the registry entry
-- is the claim: when two sweepers (a supervisor and the operator) judge the same job abandoned,
-- only the one whose ZREM removed it acts, so the job is requeued once, never twice.
-- RQ registers the execution before it marks the job started, so a worker killed in between
-- leaves a job still "queued" and still in the intermediate list: it never ran, so it goes back
-- to the head of its queue without using up an attempt (returns 2).
-- KEYS: started registry, job hash, queue list, failed registry, stats hash, intermediate list.
-- ARGV: registry entry, job id, "requeue" or "dead", new retries_left, DLQ expiry score,
--       now (RQ's UTC format), DLQ TTL (seconds);
-- then, for crash accounting (empty ARGV[8]: none): the crash ("<kind>: <detail>"), the crashes
-- that quarantine the job, the crash's kind (the metric's reason label).
-- A dead letter gets what RQ's failure path gives one: ended_at (the DLQ policy's backoff
-- counts from it) and the job hash's expiry with its DLQ entry.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'queued' then
  if put_back(KEYS[6], KEYS[3], ARGV[2]) == 0 then return 0 end
  redis.call('HINCRBY', KEYS[5], 'recovered', 1)
  return 2
end
if status ~= 'started' then return 0 end
-- A crash is counted apart from the failures and uses no ordinary attempt: the job goes back to
-- the head of its queue, where it was (it had been taken first), so it runs again at once even
-- behind a backlog, until its crashes reach ARGV[9]; then to the DLQ as quarantined (returns 3;
-- 4: requeued after a crash). A job that keeps killing its worker costs at most ARGV[9] worker
-- restarts, while the other workers keep taking the jobs behind it.
if ARGV[8] and ARGV[8] ~= '' then
  local crashes = redis.call('HINCRBY', KEYS[2], 'finex_crashes', 1)
  redis.call('HSET', KEYS[2], 'finex_last_crash', ARGV[8])
  if crashes >= tonumber(ARGV[9]) then
    redis.call('HSET', KEYS[2], 'status', 'failed', 'finex_quarantined', ARGV[8], 'ended_at', ARGV[6])
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
    redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
    redis.call('HINCRBY', KEYS[5], 'failed', 1)
    redis.call('HINCRBY', KEYS[5], 'quarantined:' .. ARGV[10], 1)
    redis.call('HINCRBY', KEYS[5], 'quarantined', 1)
    redis.call('HSET', KEYS[5], 'last_quarantined', ARGV[2] .. ' (' .. ARGV[8] .. ')')
    return 3
  end
  redis.call('HSET', KEYS[2], 'status', 'queued')
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'recovered', 1)
  return 4
end
if ARGV[3] == 'requeue' then
  redis.call('HSET', KEYS[2], 'status', 'queued', 'retries_left', ARGV[4])
  redis.call('RPUSH', KEYS[3], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'recovered', 1)
else
  redis.call('HSET', KEYS[2], 'status', 'failed', 'ended_at', ARGV[6])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
end
return 1
