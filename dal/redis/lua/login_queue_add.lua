-- Queue one portal sign-on. KEYS: 1 seq counter, 2 waiting zset, 3 the ticket hash.
-- ARGV: 1 ticket id, 2 ticket ttl (s), then field, value pairs. Returns the 1-based place.
local seq = redis.call('INCR', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
return redis.call('ZRANK', KEYS[2], ARGV[1]) + 1
