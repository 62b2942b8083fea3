-- Put one taken job back at the head of its queue (see put_back.lua).
-- KEYS: intermediate list, queue list, and optionally RQ's first-seen marker for the id.
-- ARGV: job id. Returns 1 if moved, 0 if the id was no longer in the intermediate list.
local moved = put_back(KEYS[1], KEYS[2], ARGV[1])
if KEYS[3] then redis.call('DEL', KEYS[3]) end
return moved
