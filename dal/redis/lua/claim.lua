-- The finalizer's claim. KEYS: 1 claim key, 2 due index, 3 session key
-- ARGV: 1 owner token, 2 expiry (s), 3 session id
-- Returns 1 claimed, 0 claimed by someone else, -1 not ended yet by Redis's clock. A due entry
-- without its session (debris) can be claimed at once: nothing can be written into it.
local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
if score and redis.call('EXISTS', KEYS[3]) == 1 and tonumber(score) > redis_now() then
  return -1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
