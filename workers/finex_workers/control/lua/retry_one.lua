-- Moves one job from the DLQ to its queue, atomically: Redis runs a script as one step, so a
-- crash of the caller cannot split it, and no optimistic lock can make it give up under load.
-- KEYS: failed registry, job hash, queue list, dlq-retries hash, stats hash.
-- A retried quarantined job keeps its crash count: its next crash quarantines it again.
-- ARGV: job id, enqueued_at. Returns 1 if moved, 0 if the job was not (or no longer) there.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('PERSIST', KEYS[2])
redis.call('HSET', KEYS[2], 'status', 'queued', 'retries_left', '0', 'enqueued_at', ARGV[2])
redis.call('HDEL', KEYS[2], 'started_at', 'ended_at', 'finex_quarantined')
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], 'dlq_retried', 1)
return 1
