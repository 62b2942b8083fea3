-- The one "put a job back at the head of its queue" step. RQ's own worker takes a job by moving
-- its id from the queue list to RQ's intermediate list (LMOVE) and starts it in a later round
-- trip; a worker that died in between leaves the id there, and it goes back where it was, at
-- the head, without using an attempt. (Our worker pops and starts in one script, claim.lua, so
-- it never leaves such an id; workers of an older release or plain `rq worker` can.) Prepended
-- to the scripts that need it.
-- Returns 1 if the id was in the intermediate list and moved, 0 if it was not there.
local function put_back(intermediate_key, queue_key, job_id)
  if redis.call('LREM', intermediate_key, 1, job_id) == 0 then return 0 end
  redis.call('LPUSH', queue_key, job_id)
  return 1
end
