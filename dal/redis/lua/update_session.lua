-- Compare-and-set of the session JSON plus its index entries.
-- KEYS: 1 session key, 2 due index, 3 teacher key, 4 claim key, 5 rotation schedule
-- ARGV: 1 expected JSON, 2 new JSON, 3 id, 4 new due score or '', 5 '1' to clear the teacher
--       key when it points at this id, 6 '1': refuse unless still open (no claim, due score
--       ahead of Redis's clock), 7 '1': ending, the due score becomes the least of ARGV[4],
--       Redis's now and the current score (an end never reopens a session),
--       8 the session's rotation score when it is open at level 3, '' when it is not
-- Returns 1 done, 0 session missing, -1 changed meanwhile (retry), -2 not open
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if current ~= ARGV[1] then
  return -1
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
local claimed = redis.call('EXISTS', KEYS[4]) == 1
if ARGV[6] == '1' then
  if claimed or (not score) or tonumber(score) <= redis_now() then
    return -2
  end
end
local new_score = ARGV[4]
if ARGV[7] == '1' then
  if claimed then
    return -2
  end
  local least = math.min(tonumber(ARGV[4]), redis_now())
  if score then
    least = math.min(least, tonumber(score))
  end
  new_score = string.format('%.6f', least)
end
redis.call('SET', KEYS[1], ARGV[2])
if new_score ~= '' then
  redis.call('ZADD', KEYS[2], new_score, ARGV[3])
end
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[5], ARGV[8], ARGV[3])
else
  redis.call('ZREM', KEYS[5], ARGV[3])
end
if ARGV[5] == '1' and redis.call('GET', KEYS[3]) == ARGV[3] then
  redis.call('DEL', KEYS[3])
end
return 1
