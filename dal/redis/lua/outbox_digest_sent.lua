-- OutboxLanes.digest_sent: the first `count` notices of a digest list went out as one message.
-- KEYS: 1 list, 2 marker, 3 hold, 4 delayed-entries zset; ARGV: 1 count, 2 hold ms, 3 stream,
--       4 entry payload
-- The hold starts; notices that joined the list meanwhile get the next entry, due when the
-- hold ends (the marker stays); else the marker goes and the next notice starts afresh.
redis.replicate_commands()
local count, hold_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
if count > 0 then
  redis.call('LTRIM', KEYS[1], count, -1)
  redis.call('SET', KEYS[3], '1', 'PX', hold_ms)
end
if redis.call('LLEN', KEYS[1]) > 0 then
  local at = math.floor(redis_now() * 1000) + math.max(redis.call('PTTL', KEYS[3]), 0)
  redis.call('ZADD', KEYS[4], at, ARGV[3] .. '\n' .. ARGV[4])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
