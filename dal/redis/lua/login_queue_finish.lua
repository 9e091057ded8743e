-- A claimed sign-on is done. KEYS: 1 claimed zset, 2 the ticket hash. ARGV: 1 ticket id,
-- 2 result, 3 how long the result stays readable (s). The sealed credentials go at once.
-- Returns 1 when this caller held the claim, 0 when it had lapsed (another replica took it).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], 'sealed')
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'result', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
