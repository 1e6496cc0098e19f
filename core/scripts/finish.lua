-- Finish one inbound entry: record its one reply, hand it to the outbox, ack the entry.
-- The reply key is written with NX, so a message processed twice still gets one reply.
-- KEYS[1] reply key, KEYS[2] outbox stream, KEYS[3] inbound stream, KEYS[4] dead-letter stream (optional)
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] reply JSON, ARGV[4] reply TTL (s),
-- ARGV[5] message JSON and ARGV[6] reason (only with KEYS[4])
local created = 0
if redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[4]) then
  redis.call('XADD', KEYS[2], '*', 'r', ARGV[3])
  created = 1
end
if KEYS[4] then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100000', '*', 'entry', ARGV[2], 'm', ARGV[5], 'reason', ARGV[6])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return created
