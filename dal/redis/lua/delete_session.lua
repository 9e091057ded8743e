-- Derived keys (single server only): code_key and teacher_key of the codes and teacher read
-- from the session JSON (KEYS[1]); they are global indexes, not part of the session's slot.
-- KEYS: 1 session, 2 records, 3 enrolled, 4 claim, 5 due index, 6 rotation schedule.
-- ARGV: 1 id
-- The code and teacher keys are global indexes: removed only while they still point here.
local raw = redis.call('GET', KEYS[1])
if raw then
  local ok, session = pcall(cjson.decode, raw)
  if ok and type(session) == 'table' then
    for _, code in ipairs({session.code, session.previous_code}) do
      if type(code) == 'string' then
        local ck = code_key(code)
        if redis.call('GET', ck) == ARGV[1] then
          redis.call('DEL', ck)
        end
      end
    end
    if type(session.teacher_school_number) == 'string' then
      local tk = teacher_key(session.teacher_school_number)
      if redis.call('GET', tk) == ARGV[1] then
        redis.call('DEL', tk)
      end
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
