-- Claim the head of the sign-on queue, as many as the portal's pace leaves this window.
-- KEYS: 1 waiting zset, 2 claimed zset, 3 the portal's sign-on counter (the same fixed window
-- as hit_counter.lua). ARGV: 1 sign-ons per window, 2 window (s), 3 claim (s), 4 at most.
-- A claim that expired (its replica died mid sign-on) goes back to the head of the line first.
-- Returns the claimed ticket ids; each is taken by one caller only.
local now = redis_now()
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], 0, id)
end
local cap = tonumber(ARGV[1])
local claimed = {}
while #claimed < tonumber(ARGV[4]) do
  if tonumber(redis.call('GET', KEYS[3]) or '0') >= cap then
    break
  end
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not head then
    break
  end
  redis.call('ZREM', KEYS[1], head)
  local count = redis.call('INCR', KEYS[3])
  if count == 1 or redis.call('TTL', KEYS[3]) < 0 then
    redis.call('EXPIRE', KEYS[3], ARGV[2])
  end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), head)
  claimed[#claimed + 1] = head
end
return claimed
