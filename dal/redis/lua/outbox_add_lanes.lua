-- OutboxLanes.add: entries of several lanes, digests among them, in one atomic step.
-- KEYS: 1 once marker ('' for none), 2 the delayed-entries zset, then every stream and digest
--       key the items name (by index into KEYS)
-- ARGV: 1 marker ttl (s), 2 the marker's value, then 6 values per item: stream index,
--       payload, and for a digest item (list index 0 for a plain one) list index, marker
--       index, hold index, entry payload
-- With a marker, nothing is added when it already holds this value; otherwise it is set to
-- the value (for the ttl) and the items are added. A marker of one fixed value is "once";
-- one whose value names a state is "once per state": told again only of a different one.
-- A plain item is XADDed. A digest item's payload joins its recipient's list; the one entry
-- that will send the whole list is added only when none is waiting (the marker): at once, or,
-- while the hold of the last such message runs, into the zset for when it ends.
redis.replicate_commands()
if KEYS[1] ~= '' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[1]))
end
local now_ms = math.floor(redis_now() * 1000)
for i = 3, #ARGV, 6 do
  local stream, payload = KEYS[tonumber(ARGV[i])], ARGV[i + 1]
  local list = tonumber(ARGV[i + 2])
  if list == 0 then
    redis.call('XADD', stream, '*', 'n', payload)
  else
    local marker, hold = KEYS[tonumber(ARGV[i + 3])], KEYS[tonumber(ARGV[i + 4])]
    redis.call('RPUSH', KEYS[list], payload)
    redis.call('PEXPIRE', KEYS[list], 172800000)
    if redis.call('SET', marker, '1', 'NX', 'PX', 172800000) then
      local left = redis.call('PTTL', hold)
      if left > 0 then
        redis.call('ZADD', KEYS[2], now_ms + left, stream .. '\n' .. ARGV[i + 5])
      else
        redis.call('XADD', stream, '*', 'n', ARGV[i + 5])
      end
    end
  end
end
return 1
