-- Admit one message: dedupe, admission limits and durable enqueue in one atomic step; note it
-- among its conversation's unanswered messages (the burst list); when its answer will take
-- long, queue an acknowledgement (the short form when the conversation has one out already).
-- Limits (limits.lua): a sender over the flood limit (GCRA: ARGV[11] ms apart on average,
-- ARGV[12] ms of burst), and a conversation with ARGV[16] messages unanswered (its burst
-- list's length), are refused: the message is deduped and not queued, the first of a window
-- gets the notice as its one reply (the notice markers), later ones no reply.
-- KEYS[1] dedupe key, KEYS[2..4] priority streams 0..2, KEYS[5] the target stream,
-- KEYS[6] the conversation's burst list, KEYS[7] its acknowledged marker, KEYS[8] the outbox,
-- KEYS[9] its hand-over record (no acknowledgement while people have the conversation)
-- ARGV[1] ticket id, ARGV[2] admission limit for this priority, ARGV[3] dedupe TTL (s),
-- ARGV[4] message JSON, ARGV[5] enqueued-at (unix s), ARGV[6] wait-until (unix s),
-- ARGV[7] burst item ('' = no burst list), ARGV[8] burst list / marker TTL (s),
-- KEYS[10] the sender's flood state (GCRA), KEYS[11] its notice marker, KEYS[12] the reply key,
-- KEYS[13] the conversation's notice marker
-- ARGV[9] acknowledgement reply JSON ('' = none), ARGV[10] its short form,
-- ARGV[11] flood interval (ms, 0 = no limit), ARGV[12] flood tolerance (ms),
-- ARGV[13] the flood notice reply JSON, ARGV[14] notice window (s), ARGV[15] reply TTL (s),
-- ARGV[16] the conversation limit (0 = none; needs the burst list), ARGV[17] its notice JSON
-- Returns {'duplicate', first ticket}, {'throttled', ticket, '1' (notice sent) | '0',
-- 'sender' | 'conversation'}, {'full', depth}, {'acked', ticket} or {'queued', ticket}.
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'duplicate', existing}
end
local now_ms = tonumber(ARGV[5]) * 1000
local due = flood_due(KEYS[10], now_ms, tonumber(ARGV[11]), tonumber(ARGV[12]))
if due == false then
  return refuse(KEYS[1], ARGV[1], ARGV[3], KEYS[11], ARGV[14], KEYS[12], ARGV[13], ARGV[15],
    KEYS[8], 'sender')
end
local limit = tonumber(ARGV[16])
if limit > 0 and redis.call('LLEN', KEYS[6]) >= limit then
  return refuse(KEYS[1], ARGV[1], ARGV[3], KEYS[13], ARGV[14], KEYS[12], ARGV[17], ARGV[15],
    KEYS[8], 'conversation')
end
local depth = redis.call('XLEN', KEYS[2]) + redis.call('XLEN', KEYS[3]) + redis.call('XLEN', KEYS[4])
if depth >= tonumber(ARGV[2]) then
  return {'full', tostring(depth)}
end
note_flood(KEYS[10], due, now_ms)
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
