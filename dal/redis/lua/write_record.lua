-- A teacher's write into a live session (accept, reject, add).
-- KEYS: 1 session key, 2 records hash, 3 due index, 4 claim key
-- ARGV: 1 student number, 2 record JSON, 3 'nx' or 'set', 4 session id
-- Returns -1 when the session is gone, -2 when it has ended by Redis's clock or is claimed
-- (the module's invariant), else 1 written / 0 already there (nx).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[4])
if redis.call('EXISTS', KEYS[4]) == 1 or (not score) or tonumber(score) <= redis_now() then
  return -2
end
if ARGV[3] == 'nx' then
  return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
