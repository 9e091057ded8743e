-- The shared flood budget's reservation (dal/redis/flood.py, policy in bot/flood.py).
-- KEYS: 1 global TAT, 2 pause, then per asker its chat TAT key ('' for none)
-- ARGV: 1 global interval ms, 2 global tolerance ms, 3 horizon ms, then per asker two values:
--       chat interval ms, chat tolerance ms
-- Answers, per asker in order, {granted, wait ms, by_chat}: granted 1 means a slot `wait` ms
-- from now is reserved; granted 0 means the next slot is further away than the horizon: nothing
-- reserved, ask again later. by_chat 1: the chat's own limit, not the bot's, sets the wait.
redis.replicate_commands()
local now = redis_now() * 1000
local gi, gt, h = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local g = tonumber(redis.call('GET', KEYS[1]) or '0')
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {}
local moved = false
for j = 1, #KEYS - 2 do
  local key, ci, ct = KEYS[j + 2], tonumber(ARGV[2 * j + 2]), tonumber(ARGV[2 * j + 3])
  local at = math.max(now, g - gt, pause)
  local c, by_chat = 0, 0
  if key ~= '' then
    c = tonumber(redis.call('GET', key) or '0')
    if c - ct > at then
      at = c - ct
      by_chat = 1
    end
  end
  -- Integer replies truncate: round waits up, so 0.3 ms is not read as "now".
  if at - now > h then
    out[#out + 1] = 0
  else
    g = math.max(g, at) + gi
    moved = true
    if key ~= '' then
      local nc = math.max(c, at) + ci
      redis.call('SET', key, nc, 'PX', math.ceil(nc - now + 1000))
    end
    out[#out + 1] = 1
  end
  out[#out + 1] = math.ceil(at - now)
  out[#out + 1] = by_chat
end
if moved then
  redis.call('SET', KEYS[1], g, 'PX', math.ceil(g - now + 1000))
end
return out
