-- OutboxLanes.add(..., once=marker): the marker and entries of several lanes in one atomic step.
-- KEYS: 1 marker, 2.. the lane streams; ARGV: 1 marker ttl (s), then pairs of
-- (index into KEYS of the entry's stream, entry payload)
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'n', ARGV[i + 1])
end
return 1
