-- The teacher's open session in one round trip (LiveSessions.get_open_attendance).
-- Derived key (single server only): session_key(id) of the id the teacher key holds.
-- KEYS: 1 teacher key, 2 due index. Returns {id, session JSON or '', due score or ''} or nil.
local id = redis.call('GET', KEYS[1])
if not id then
  return false
end
local session = redis.call('GET', session_key(id))
local score = redis.call('ZSCORE', KEYS[2], id)
return {id, session or '', score or ''}
