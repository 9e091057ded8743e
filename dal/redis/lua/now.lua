-- Prelude of every script (dal/redis/scripts.py prepends it, then the key builders generated
-- from dal/redis/keys.py: session_key, records_key, enrolled_key, claim_key, code_key,
-- teacher_key). Redis's clock, in epoch seconds with microseconds: the only clock that decides
-- "ended" (the live-write invariant, dal/redis/sessions.py).
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
