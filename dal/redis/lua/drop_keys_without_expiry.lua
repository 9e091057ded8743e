-- Purge (dal/redis/purge.py): the check runs in the same call as the delete.
-- KEYS: keys that must carry an expiry. Deletes those that have none (TTL -1).
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('TTL', key) == -1 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
