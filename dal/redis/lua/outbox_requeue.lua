-- Outbox.requeue: put entries back at the end of the stream, each only while it is still
-- pending for the consumer that asks. An entry another consumer took over meanwhile (this one
-- stalled past its heartbeat) is theirs to send; a copy here would be sent twice.
-- KEYS: 1 stream; ARGV: 1 group, 2 consumer, then pairs of (entry id, new payload)
local moved = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #mine > 0 then
    redis.call('XADD', KEYS[1], '*', 'n', ARGV[i + 1])
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    moved = moved + 1
  end
end
return moved
