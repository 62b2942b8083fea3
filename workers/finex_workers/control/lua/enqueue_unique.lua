-- Enqueues a unit of work under its deterministic id unless the same work is pending, in one
-- atomic step (runtime/enqueue.py enqueue_unique). It checks the statuses of every generation
-- of the id, and enqueues under the first free one the way RQ's own enqueue writes a job
-- (Queue._enqueue_async_job: the job hash, the queues set, RPUSH). A free generation may be
-- the hash of a finished run of the same work, with its result_ttl EXPIRE still on: it is
-- deleted first, with its results stream, dependents and dependencies sets and its
-- finished-registry entry, so the new job lives until it runs and inherits nothing.
-- KEYS: queue list, RQ's queues set, finished registry, then per generation, in order:
--       job hash, results stream, dependents set, dependencies set.
-- ARGV: number of generations, queue key (the queues set's member), the generations' ids
--       (in KEYS' order), then the job hash's fields and values (Job.to_dict()).
-- Returns {'pending', n} (generation n is queued, scheduled or deferred: nothing written),
-- {'busy'} (every generation runs or sits in the DLQ), or {'created', n}.
local count = tonumber(ARGV[1])
local free = nil
for n = 1, count do
  local status = redis.call('HGET', KEYS[4 * n], 'status')
  if status == 'queued' or status == 'scheduled' or status == 'deferred' then
    return {'pending', n}
  end
  if not free and status ~= 'started' and status ~= 'failed' and status ~= 'stopped' then
    free = n
  end
end
if not free then return {'busy'} end
local base = 4 * free
local id = ARGV[2 + free]
redis.call('DEL', KEYS[base], KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])
redis.call('ZREM', KEYS[3], id)
redis.call('HSET', KEYS[base], unpack(ARGV, 3 + count))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[1], id)
return {'created', free}
