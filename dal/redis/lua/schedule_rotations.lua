-- Level 3: put open sessions missing from the rotation schedule on it (sessions opened by a
-- version without the schedule; dal/redis/sessions.py `schedule_missed_rotations`).
-- KEYS: 1 rotation schedule, 2 due index, then the session key of each candidate.
-- ARGV: per candidate three values: id, the session JSON read, its score (last code change).
-- A candidate is added only if its session is still the one read (so still level 3, not
-- ended) and still open by Redis's clock; an entry already there is left as it is (NX).
-- Returns how many were added.
local added = 0
for i = 1, #KEYS - 2 do
  local id, expected, score = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if redis.call('GET', KEYS[i + 2]) == expected then
    local due = redis.call('ZSCORE', KEYS[2], id)
    if due and tonumber(due) > redis_now() then
      added = added + redis.call('ZADD', KEYS[1], 'NX', score, id)
    end
  end
end
return added
