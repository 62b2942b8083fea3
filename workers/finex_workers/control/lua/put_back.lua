-- The one "put a job back at the head of its queue" step. A worker takes a job by moving its id
-- from the queue list to RQ's intermediate list (LMOVE); a job that must not run yet (its queue
-- was paused after the pop, or its worker died before starting it) goes back where it was, at
-- the head, without using an attempt. Prepended to the scripts that need it.
-- Returns 1 if the id was in the intermediate list and moved, 0 if it was not there.
local function put_back(intermediate_key, queue_key, job_id)
  if redis.call('LREM', intermediate_key, 1, job_id) == 0 then return 0 end
  redis.call('LPUSH', queue_key, job_id)
  return 1
end
