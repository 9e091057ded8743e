-- Helper, included by `--! uses: cap`. The head-count cap: once `head_count_cap`
-- records of the session are attended, a further check-in that would count is recorded as
-- pending review (OVER_CAP) instead. Counting scans the session's records only when a cap is
-- set (a classroom's worth).
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
