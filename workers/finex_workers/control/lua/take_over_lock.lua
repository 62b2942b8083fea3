-- Takes over a scheduler lock from a scheduler judged dead, atomically: only if the lock still
-- names that dead owner (a live scheduler that refreshed or took it meanwhile keeps it).
-- Staleness is judged here, on Redis's clock, never on two hosts' clocks: the holder refreshes
-- its lock to the full TTL at every beat, so the seconds since its last beat are the full TTL
-- less what the lock has left.
-- KEYS: the lock. ARGV: the dead owner, the new owner, TTL in seconds, and the seconds without
-- a beat after which the holder counts as dead ('' when it is known dead: its metadata is gone
-- or its pid is not running on this host).
-- Returns 1 if taken over (or the lock was free and is now ours), 0 if someone else holds it.
local value = redis.call('GET', KEYS[1])
if value and value ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
if value and ARGV[4] ~= '' then
  local left = redis.call('PTTL', KEYS[1]) / 1000
  if left > 0 and ttl - left <= tonumber(ARGV[4]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
return 1
