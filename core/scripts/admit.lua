-- Admit one message: dedupe, admission limit and durable enqueue in one atomic step.
-- KEYS[1] dedupe key, KEYS[2..4] priority streams 0..2, KEYS[5] the target stream
-- ARGV[1] ticket id, ARGV[2] admission limit for this priority, ARGV[3] dedupe TTL (s),
-- ARGV[4] message JSON, ARGV[5] enqueued-at (unix s), ARGV[6] wait-until (unix s)
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'duplicate', existing}
end
local depth = redis.call('XLEN', KEYS[2]) + redis.call('XLEN', KEYS[3]) + redis.call('XLEN', KEYS[4])
if depth >= tonumber(ARGV[2]) then
  return {'full', tostring(depth)}
end
redis.call('XADD', KEYS[5], '*', 't', ARGV[1], 'm', ARGV[4], 'e', ARGV[5], 'w', ARGV[6])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return {'queued', ARGV[1]}
