--! uses: cap
-- Derived keys (single server only): session_key, claim_key and records_key of the session
-- named by the location wait (KEYS[1]), read in this same atomic step.
-- A student's location decides their LOCATION_MISSING record (a write into a live session).
-- KEYS: 1 the sender's location wait key, 2 due index
-- ARGV: 1 the reason code when the location fails ('' when it proves presence)
-- Returns {'NO_WAIT'} (nothing waits, or the wait timed out), {'ENDED', id}, {'DECIDED', id}
-- (someone decided the record meanwhile, e.g. the teacher), or {status, id, session, record}
-- with status OK_PRESENT or OK_PENDING (the new record).
local wait = redis.call('GET', KEYS[1])
if not wait then
  return {'NO_WAIT'}
end
local bar = string.find(wait, '|', 1, true)
local id, number = string.sub(wait, 1, bar - 1), string.sub(wait, bar + 1)
local session = redis.call('GET', session_key(id))
local score = redis.call('ZSCORE', KEYS[2], id)
if (not session) or (not score) or tonumber(score) <= redis_now()
   or redis.call('EXISTS', claim_key(id)) == 1 then
  redis.call('DEL', KEYS[1])
  return {'ENDED', id}
end
local records = records_key(id)
local old = redis.call('HGET', records, number)
local waiting = '"is_attended":false,"fail_reason":"' .. REASON_LOCATION_MISSING .. '"'
redis.call('DEL', KEYS[1])
if (not old) or (not string.find(old, waiting, 1, true)) then
  return {'DECIDED', id}
end
local reason = ARGV[1]
if reason == '' and over_cap(records, cjson.decode(session)) then
  reason = REASON_OVER_CAP
end
local decided, status = '"is_attended":true,"fail_reason":null', 'OK_PRESENT'
if reason ~= '' then
  decided, status = '"is_attended":false,"fail_reason":"' .. reason .. '"', 'OK_PENDING'
end
local record = string.gsub(old, waiting, decided, 1)
redis.call('HSET', records, number, record)
return {status, id, session, record}
