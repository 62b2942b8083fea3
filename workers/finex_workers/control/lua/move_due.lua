-- Moves due jobs from a queue's scheduled registry onto the queue, atomically: what RQ's
-- scheduler does in two steps (read the due ids, then enqueue and remove them in a pipeline),
-- so two schedulers that both read an id (one took the lock over from the other, still alive)
-- both enqueued it. Removing the id from the registry is the claim: only one moves it.
-- KEYS: scheduled registry, queue list. ARGV: job key prefix, enqueued_at (RQ's UTC format),
-- most ids per call.
-- Returns the ids moved (ids whose job hash is gone are dropped from the registry).
local now = tonumber(redis.call('TIME')[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], 0, now, 'LIMIT', 0, tonumber(ARGV[3]))
local moved = {}
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job_key = ARGV[1] .. id
    if redis.call('EXISTS', job_key) == 1 then
      redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', ARGV[2])
      if redis.call('HGET', job_key, 'enqueue_at_front_on_retry') == '1' then
        redis.call('LPUSH', KEYS[2], id)
      else
        redis.call('RPUSH', KEYS[2], id)
      end
      moved[#moved + 1] = id
    end
  end
end
return moved
