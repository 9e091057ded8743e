-- Staleness of outbox entries (dal/redis/outbox.py: Outbox.stale). One answer per entry: 1 when
-- any of its conditions holds (drop it), else 0. Conditions (JSON arrays, spelled by
-- services/notice_codec.py `conditions`; each kind means what its `services.notify.Stale`
-- constructor says): ["checked_in", id, number], ["session_over", id],
-- ["lesson_opened", teacher_school_number, lesson_code].
-- Derived keys (single server only): session_key, records_key and teacher_key of the ids and
-- teachers named in the conditions, which are stored with each entry as opaque JSON.
-- KEYS: 1 due index; ARGV: one JSON array of conditions per entry
local now = redis_now()
local function open(id)
  local score = redis.call('ZSCORE', KEYS[1], id)
  return score and tonumber(score) > now and redis.call('EXISTS', session_key(id)) == 1
end
local function holds(c)
  local kind = c[1]
  if kind == 'checked_in' then
    return redis.call('HEXISTS', records_key(c[2]), c[3]) == 1
  elseif kind == 'session_over' then
    return not open(c[2])
  elseif kind == 'lesson_opened' then
    local id = redis.call('GET', teacher_key(c[2]))
    if not id or not open(id) then return false end
    local raw = redis.call('GET', session_key(id))
    local ok, session = pcall(cjson.decode, raw)
    return ok and session['lesson_code'] == c[3]
  end
  return false
end
local out = {}
for i = 1, #ARGV do
  local stale = 0
  for _, c in ipairs(cjson.decode(ARGV[i])) do
    if holds(c) then stale = 1 break end
  end
  out[i] = stale
end
return out
