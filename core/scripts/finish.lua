-- Finish a turn: record its one reply (under the ticket of every message it answers), hand it
-- to the outbox, ack the entry, drop the answered messages from the burst list and end the
-- turn. The reply keys are written with NX, so a message processed twice gets one reply.
-- KEYS[1] reply key of the answered ticket, KEYS[2] outbox stream, KEYS[3] inbound stream,
-- KEYS[4] today's counters, KEYS[5] burst list, KEYS[6] turn lock, KEYS[7] acknowledged
-- marker, KEYS[8] dead-letter stream, KEYS[9...] reply keys of the burst's other tickets
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] reply JSON, ARGV[4] reply TTL (s),
-- ARGV[5] reply source (counted), ARGV[6] burst messages answered ('0': none),
-- ARGV[7] turn lock token ('' = none), ARGV[8] dead-letter reason ('' = none),
-- ARGV[9] message JSON (dead letters), ARGV[10] the entry's priority (its stream drained)
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
if ARGV[8] ~= '' then
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', '100000', '*', 'entry', ARGV[2], 'm', ARGV[9], 'reason', ARGV[8])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'drained:' .. ARGV[10], 1)
local answered = tonumber(ARGV[6])
if answered > 0 then
  redis.call('LTRIM', KEYS[5], answered, -1)
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[6]) == ARGV[7] then
  redis.call('DEL', KEYS[6])
end
return created
