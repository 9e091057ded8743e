-- Purge (dal/redis/purge.py). Derived key (single server only): session_key(id) of the id
-- each pointer holds. Each check runs in the same call as its delete, so a key rewritten (or a
-- session opened) between the SCAN that found it and the delete is left alone.
-- KEYS: pointer keys whose value is a session id (code index, teacher's open session).
-- Deletes the pointers whose session key is gone; returns how many were deleted.
local removed = 0
for _, key in ipairs(KEYS) do
  local id = redis.call('GET', key)
  if id and redis.call('EXISTS', session_key(id)) == 0 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
