-- Open a session under a fresh code (dal/redis/sessions.py: LiveSessions.open_attendance).
-- Derived key (single server only): session_key(current), the teacher's current session,
-- whose id is read from KEYS[1] in this same atomic step.
-- KEYS: 1 teacher key, 2 code key, 3 session key, 4 enrolled key, 5 due index,
--       6 rotation schedule
-- ARGV: 1 id, 2 session JSON, 3 due score, 4 now (epoch s), 5 rotation score ('' unless
--       level 3), 6.. enrolled student numbers
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  local score = redis.call('ZSCORE', KEYS[5], current)
  if score and tonumber(score) > tonumber(ARGV[4])
     and redis.call('EXISTS', session_key(current)) == 1 then
    return {'OPEN', current}
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'EXISTS'}
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX') then
  return {'CODE_TAKEN'}
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[4])
for i = 6, #ARGV, 1000 do
  redis.call('SADD', KEYS[4], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
end
return {'OK'}
