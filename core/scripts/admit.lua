-- Admit one message: dedupe, admission limit and durable enqueue in one atomic step; with
-- burst merge, note it among its conversation's unanswered messages; when its answer will take
-- long, queue an acknowledgement (the short form when the conversation has one out already).
-- KEYS[1] dedupe key, KEYS[2..4] priority streams 0..2, KEYS[5] the target stream,
-- KEYS[6] the conversation's burst list, KEYS[7] its acknowledged marker, KEYS[8] the outbox,
-- KEYS[9] its hand-over record (no acknowledgement while people have the conversation)
-- ARGV[1] ticket id, ARGV[2] admission limit for this priority, ARGV[3] dedupe TTL (s),
-- ARGV[4] message JSON, ARGV[5] enqueued-at (unix s), ARGV[6] wait-until (unix s),
-- ARGV[7] burst item ('' = no merging), ARGV[8] burst list / marker TTL (s),
-- ARGV[9] acknowledgement reply JSON ('' = none), ARGV[10] its short form
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
if ARGV[7] ~= '' then
  redis.call('RPUSH', KEYS[6], ARGV[7])
  redis.call('EXPIRE', KEYS[6], ARGV[8])
end
local handover = redis.call('HGET', KEYS[9], 'status')
if ARGV[9] ~= '' and handover ~= 'requested' and handover ~= 'owned' then
  if redis.call('SET', KEYS[7], ARGV[1], 'NX', 'EX', ARGV[8]) then
    redis.call('XADD', KEYS[8], '*', 'r', ARGV[9])
  else
    redis.call('XADD', KEYS[8], '*', 'r', ARGV[10])
  end
  return {'acked', ARGV[1]}
end
return {'queued', ARGV[1]}
