-- OutboxLanes.release_due: delayed entries whose time has come go into their lane's stream.
-- KEYS: 1 the delayed-entries zset; ARGV: 1 at most this many
-- Members are "<stream>\n<payload>" (single server: the streams are named in the members).
redis.replicate_commands()
local now_ms = math.floor(redis_now() * 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local cut = string.find(member, '\n', 1, true)
  redis.call('XADD', string.sub(member, 1, cut - 1), '*', 'n', string.sub(member, cut + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due
