-- Purge (dal/redis/purge.py): the check runs in the same call as the delete.
-- KEYS: pairs (state key, data key). ARGV: states to keep while they still have an expiry.
-- Deletes both keys of every other pair; returns the number of keys deleted.
local keep = {}
for _, state in ipairs(ARGV) do
  keep[state] = true
end
local removed = 0
for i = 1, #KEYS, 2 do
  local state = redis.call('GET', KEYS[i])
  if not (state and keep[state] and redis.call('TTL', KEYS[i]) > 0) then
    removed = removed + redis.call('DEL', KEYS[i], KEYS[i + 1])
  end
end
return removed
