--! uses: cap
-- A student's check-in, the hot path (dal/redis/checkins.py): one call, one round trip.
-- Derived keys (single server only): session_key, claim_key, records_key and enrolled_key of
-- the session whose id the code key (KEYS[2]) holds; looking it up first would cost the hot
-- path a second round trip and a race with the code's rotation.
-- KEYS: 1 throttle key, 2 code key, 3 due index, 4 the sender's user session (users:<id>),
--       5 the sender's location wait key (checkin:location:<id>)
-- ARGV: 1 throttle limit, 2 throttle window (s), 3 now (ISO 8601, only stamps the record:
--       Redis's clock decides "ended"), 4 the sender's Telegram id, 5 the code, 6 how long a
--       location is waited for (s), 7.. keys that send the update the long way when one
--       exists (bot/fsm.py: the FSM state, the login prompt, the undeliverable mark)
-- Returns {'BUSY'} having changed nothing when one of the ARGV[7..] keys exists.
local function throttled()
  local count = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if count < tonumber(ARGV[1]) then
    return nil
  end
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {'THROTTLED', ttl}
end
local function count_failure()
  -- The window starts at the first failure (EXPIRE ... NX without Redis 7's NX).
  if redis.call('INCR', KEYS[1]) == 1 or redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
  end
end
-- One EXISTS for all of them: it counts those that exist (one command, not one per key).
if #ARGV >= 7 and redis.call('EXISTS', unpack(ARGV, 7)) > 0 then
  return {'BUSY'}
end
local user = redis.call('GET', KEYS[4])
if not user then
  -- A code from an account with no user session counts like a wrong code, and once throttled
  -- is refused here, before the caller looks the account up in PostgreSQL.
  local refused = throttled()
  if refused then
    return refused
  end
  count_failure()
  return {'NOT_LINKED'}
end
local u = cjson.decode(user)
if u['role'] ~= ROLE_STUDENT then
  return {'NOT_STUDENT'}
end
local number = u['school_number']
local refused = throttled()
if refused then
  return refused
end
local id = redis.call('GET', KEYS[2])
if not id then
  count_failure()
  return {'WRONG_CODE'}
end
local session = redis.call('GET', session_key(id))
if not session then
  return {'WRONG_CODE'}
end
-- Ended by Redis's clock, or claimed by the finalizer: closed (the module's invariant).
local score = redis.call('ZSCORE', KEYS[3], id)
if (not score) or tonumber(score) <= redis_now()
   or redis.call('EXISTS', claim_key(id)) == 1 then
  return {'ENDED', id, session}
end
local s = cjson.decode(session)
local level = tonumber(s['security_option']) or LEVEL_CODE
local records = records_key(id)
local existing = redis.call('HGET', records, number)
if existing then
  return {'DUPLICATE', id, session, existing}
end
-- Only the current and the previous code count (level 3 rotates them; a session
-- switched back to level 1 or 2 keeps its last two). An older code of this session has
-- expired: not a wrong code (it belonged to an open session), not counted.
if ARGV[5] ~= s['code'] and ARGV[5] ~= s['previous_code'] then
  return {'EXPIRED', id, session}
end
-- Enrolled: named in the enrolled set, or EVERYONE there (the lesson has no known enrolment),
-- or the session's lesson slot among the student's cached slots (linked after the opening).
-- Not enrolled but the course among their cached courses: another section (pending review).
-- A session stored without a slot (opened before slots existed) takes the course as enough.
-- Cached courses and slots count only when they come from the session's term.
local enrolled = enrolled_key(id)
local member = redis.call('SISMEMBER', enrolled, number) == 1
  or redis.call('SISMEMBER', enrolled, EVERYONE) == 1
local reason = REASON_NOT_IN_SCHEDULE
if (not member) and s['term'] == u['term'] then
  local slot = s['slot']
  local has_slot = type(slot) == 'string'
  if has_slot and type(u['slots']) == 'table' then
    for _, mine in ipairs(u['slots']) do
      if mine == slot then
        member = true
        break
      end
    end
  end
  if not member and type(u['courses']) == 'table' then
    for _, course in ipairs(u['courses']) do
      if course == s['lesson_code'] then
        if has_slot then
          reason = REASON_ANOTHER_SECTION
        else
          member = true
        end
        break
      end
    end
  end
end
-- The record is written as text, not re-encoded by cjson, which would round a Telegram id of
-- more than 14 digits.
local head = '{"student_number":' .. cjson.encode(number)
  .. ',"student_full_name":' .. cjson.encode(u['full_name'])
  .. ',"telegram_id":' .. ARGV[4] .. ',"attendance_time":"' .. ARGV[3]
  .. '","source":"' .. SOURCE_CODE .. '",'
-- Levels 2 and 3 with the teacher's location known: an enrolled student is asked for theirs;
-- the record says LOCATION_MISSING until a location decides it (services.location).
local anchored = level >= LEVEL_LOCATION and type(s['anchor_latitude']) == 'number'
if member and anchored then
  member, reason = false, REASON_LOCATION_MISSING
  redis.call('SET', KEYS[5], id .. '|' .. number, 'EX', ARGV[6])
elseif member and over_cap(records, s) then
  member, reason = false, REASON_OVER_CAP
end
local record, status
if member then
  record, status = head .. '"is_attended":true,"fail_reason":null}', 'OK_PRESENT'
else
  record, status = head .. '"is_attended":false,"fail_reason":"' .. reason .. '"}', 'OK_PENDING'
  if reason == REASON_LOCATION_MISSING then
    status = 'OK_LOCATION'
  end
end
redis.call('HSET', records, number, record)
return {status, id, session, record}
