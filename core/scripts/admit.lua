-- Admit one message: dedupe, admission limit and durable enqueue in one atomic step; with
-- burst merge, note it among its conversation's unanswered messages; when its answer will take
-- long, queue an acknowledgement (the short form when the conversation has one out already).
-- A sender over the flood limit (GCRA: ARGV[11] ms apart on average, ARGV[12] ms of burst) is
-- not queued: the message is deduped and gets the polite notice as its one reply, once a
-- window (the notice marker); later ones in that window get no reply.
-- KEYS[1] dedupe key, KEYS[2..4] priority streams 0..2, KEYS[5] the target stream,
-- KEYS[6] the conversation's burst list, KEYS[7] its acknowledged marker, KEYS[8] the outbox,
-- KEYS[9] its hand-over record (no acknowledgement while people have the conversation)
-- ARGV[1] ticket id, ARGV[2] admission limit for this priority, ARGV[3] dedupe TTL (s),
-- ARGV[4] message JSON, ARGV[5] enqueued-at (unix s), ARGV[6] wait-until (unix s),
-- ARGV[7] burst item ('' = no merging), ARGV[8] burst list / marker TTL (s),
-- KEYS[10] the sender's flood state (GCRA), KEYS[11] its notice marker, KEYS[12] the reply key
-- ARGV[9] acknowledgement reply JSON ('' = none), ARGV[10] its short form,
-- ARGV[11] flood interval (ms, 0 = no limit), ARGV[12] flood tolerance (ms),
-- ARGV[13] the notice reply JSON, ARGV[14] reply TTL (s), ARGV[15] flood window (s)
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'duplicate', existing}
end
local interval = tonumber(ARGV[11])
local tat
if interval > 0 then
  local now = tonumber(ARGV[5]) * 1000
  tat = math.max(tonumber(redis.call('GET', KEYS[10]) or 0), now)
  if tat - now > tonumber(ARGV[12]) then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
    if redis.call('SET', KEYS[11], ARGV[1], 'NX', 'EX', ARGV[15]) then
      redis.call('SET', KEYS[12], ARGV[13], 'EX', ARGV[14])
      redis.call('XADD', KEYS[8], '*', 'r', ARGV[13])
      return {'throttled', ARGV[1]}
    end
    return {'throttled', ARGV[1], 'silent'}
  end
  tat = tat + interval
end
local depth = redis.call('XLEN', KEYS[2]) + redis.call('XLEN', KEYS[3]) + redis.call('XLEN', KEYS[4])
if depth >= tonumber(ARGV[2]) then
  return {'full', tostring(depth)}
end
if tat then
  redis.call('SET', KEYS[10], tostring(tat), 'PX', math.ceil(tat - tonumber(ARGV[5]) * 1000) + 1)
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
