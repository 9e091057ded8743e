-- Purge (dal/redis/purge.py): the check runs in the same call as the delete.
-- KEYS: n per-session keys, then the session key of each, in the same order (2n keys).
-- Deletes the per-session keys whose session key is gone; returns how many were deleted.
local n = #KEYS / 2
local removed = 0
for i = 1, n do
  if redis.call('EXISTS', KEYS[n + i]) == 0 then
    removed = removed + redis.call('DEL', KEYS[i])
  end
end
return removed
