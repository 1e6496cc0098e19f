-- Finish one inbound entry: record its one reply, hand it to the outbox, ack the entry.
-- The reply key is written with NX, so a message processed twice still gets one reply.
-- KEYS[1] reply key, KEYS[2] outbox stream, KEYS[3] inbound stream, KEYS[4] today's counters,
-- KEYS[5] dead-letter stream (optional)
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] reply JSON, ARGV[4] reply TTL (s),
-- ARGV[5] reply source (counted), ARGV[6] message JSON and ARGV[7] reason (only with KEYS[5])
local created = 0
if redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[4]) then
  redis.call('XADD', KEYS[2], '*', 'r', ARGV[3])
  if redis.call('HINCRBY', KEYS[4], ARGV[5], 1) == 1 then  -- a new counter: the day's key expires
    redis.call('EXPIRE', KEYS[4], 691200)
  end
  created = 1
end
if KEYS[5] then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', '100000', '*', 'entry', ARGV[2], 'm', ARGV[6], 'reason', ARGV[7])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return created
