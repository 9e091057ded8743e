-- A 429's retry_after, for every replica (dal/redis/flood.py).
-- KEYS: 1 pause, 2 chat TAT (or ''); ARGV: 1 seconds
redis.replicate_commands()
local now = redis_now() * 1000
local untl = now + math.floor(tonumber(ARGV[1]) * 1000)
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], untl, 'PX', untl - now + 1000)
end
if KEYS[2] ~= '' then
  local c = tonumber(redis.call('GET', KEYS[2]) or '0')
  if untl > c then redis.call('SET', KEYS[2], untl, 'PX', untl - now + 1000) end
end
return untl - now
