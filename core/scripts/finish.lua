-- Finish a turn: record its one reply (under the ticket of every message it answers), hand it
-- to the outbox, ack the entry, drop the answered messages from the burst list (the entry's
-- own item too, rebuilt from its stream entry as admit.lua wrote it: also when it is answered
-- alone or dead-lettered, so the list counts exactly what is unanswered) and end the turn.
-- The reply keys are written with NX, so a message processed twice gets one reply.
-- KEYS[1] reply key of the answered ticket, KEYS[2] outbox stream, KEYS[3] inbound stream,
-- KEYS[4] today's counters, KEYS[5] burst list, KEYS[6] turn lock, KEYS[7] acknowledged
-- marker, KEYS[8] dead-letter stream, KEYS[9...] reply keys of the burst's other tickets
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] reply JSON, ARGV[4] reply TTL (s),
-- ARGV[5] reply source (counted), ARGV[6] turn lock token ('' = none),
-- ARGV[7] dead-letter reason ('' = none), ARGV[8] message JSON (dead letters),
-- ARGV[9] the entry's priority (its stream drained), ARGV[10...] the burst items answered
-- Returns 1 (stored), 0 (it had a reply already: nothing sent) or -1 (the turn lock lapsed and
-- another worker has the conversation: nothing done, the entry stays for a retry).
if ARGV[6] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[6] then
  return -1
end
local created = 0
if redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[4]) then
  for i = 9, #KEYS do
    redis.call('SET', KEYS[i], ARGV[3], 'NX', 'EX', ARGV[4])
  end
  redis.call('XADD', KEYS[2], '*', 'r', ARGV[3])
  if redis.call('HINCRBY', KEYS[4], ARGV[5], 1) == 1 then  -- a new counter: the day's key expires
    redis.call('EXPIRE', KEYS[4], 691200)
  end
  redis.call('DEL', KEYS[7])
  created = 1
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', '100000', '*', 'entry', ARGV[2], 'm', ARGV[8], 'reason', ARGV[7])
end
local entry = redis.call('XRANGE', KEYS[3], ARGV[2], ARGV[2])[1]
if entry then
  local fields = {}
  for i = 1, #entry[2], 2 do
    fields[entry[2][i]] = entry[2][i + 1]
  end
  if fields['t'] and fields['m'] then
    redis.call('LREM', KEYS[5], 1, fields['t'] .. '\31' .. ARGV[9] .. '\31' .. fields['m'])
  end
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'drained:' .. ARGV[9], 1)
for i = 10, #ARGV do
  redis.call('LREM', KEYS[5], 1, ARGV[i])
end
if ARGV[6] ~= '' then
  redis.call('DEL', KEYS[6])
end
return created
