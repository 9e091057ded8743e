-- Extend a lock or claim only while `owner` (ARGV[1]) still holds it. ARGV[2]: seconds.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
