-- Level 3: the session's code changes (a write into a live session: refused once ended).
-- KEYS: 1 session key, 2 due index, 3 claim key, 4 the new code's key, 5 rotation schedule
-- ARGV: 1 expected session JSON, 2 new session JSON, 3 id, 4 the new code's change (epoch s)
-- The schedule entry moves to ARGV[4] on a rotation and goes with a session gone or closed.
-- Returns 1 done, 0 session gone, -1 changed meanwhile, -2 not open, -3 code taken.
-- The replaced codes' keys keep pointing here, so an old code is told "expired" rather than
-- counted wrong; the purge drops them once the session is gone.
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('ZREM', KEYS[5], ARGV[3])
  return 0
end
if current ~= ARGV[1] then
  return -1
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 or (not score) or tonumber(score) <= redis_now() then
  redis.call('ZREM', KEYS[5], ARGV[3])
  return -2
end
if not redis.call('SET', KEYS[4], ARGV[3], 'NX') then
  return -3
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[3])
return 1
