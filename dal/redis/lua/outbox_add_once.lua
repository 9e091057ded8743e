-- Outbox.add(..., once=marker): the marker and the entries in one atomic step.
-- KEYS: 1 marker, 2 stream; ARGV: 1 marker ttl (s), 2.. entry payloads
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[2], '*', 'n', ARGV[i])
end
return 1
