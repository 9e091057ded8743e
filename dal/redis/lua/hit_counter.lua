-- KEYS: 1 counter. ARGV: 1 window (s). The window starts at the first hit; a counter that
-- somehow lost its expiry gets one again (what EXPIRE ... NX does on Redis 7, spelled for 6.2).
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
