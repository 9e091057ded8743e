-- Purge (dal/redis/purge.py): the check runs in the same call as the removal.
-- KEYS: 1 due index, then the session key of each id. ARGV: session ids (members), same order.
-- Removes the members whose session key is gone; returns how many were removed.
local removed = 0
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], id)
  end
end
return removed
