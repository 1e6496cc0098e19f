-- Answer a message at once, without the LLM (commands, unsupported content, templates):
-- dedupe, the sender's flood limit (limits.lua: a message over it gets the flood notice once
-- a window instead, or nothing), store its one reply and hand it to the outbox, atomically.
-- KEYS[1] dedupe key, KEYS[2] reply key, KEYS[3] outbox stream, KEYS[4] today's counters,
-- KEYS[5] the sender's flood state, KEYS[6] its notice marker,
-- KEYS[7] the conversation's burst list, KEYS[8] its turn lock and KEYS[9] its hand-over
-- record (optional: then answer only when nothing of the conversation is waiting or being
-- answered, so no reply overtakes another, and when no person has the conversation)
-- ARGV[1] ticket id, ARGV[2] dedupe TTL (s), ARGV[3] reply JSON, ARGV[4] reply TTL (s),
-- ARGV[5] reply source (counted), ARGV[6] now (unix s), ARGV[7] flood interval (ms, 0 = no
-- limit), ARGV[8] flood tolerance (ms), ARGV[9] the flood notice reply JSON, ARGV[10] its
-- window (s)
-- Returns {'duplicate', first ticket}, {'busy', ''} (nothing done), {'throttled', ticket,
-- '1' | '0', 'sender'} or {'queued', ticket}.
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'duplicate', existing}
end
if KEYS[7] then
  local handover = redis.call('HGET', KEYS[9], 'status')
  if redis.call('LLEN', KEYS[7]) > 0 or redis.call('EXISTS', KEYS[8]) == 1
      or handover == 'requested' or handover == 'owned' then
    return {'busy', ''}
  end
end
local now_ms = tonumber(ARGV[6]) * 1000
local due = flood_due(KEYS[5], now_ms, tonumber(ARGV[7]), tonumber(ARGV[8]))
if due == false then
  return refuse(KEYS[1], ARGV[1], ARGV[2], KEYS[6], ARGV[10], KEYS[2], ARGV[9], ARGV[4],
    KEYS[3], 'sender')
end
note_flood(KEYS[5], due, now_ms)
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('XADD', KEYS[3], '*', 'r', ARGV[3])
if redis.call('HINCRBY', KEYS[4], ARGV[5], 1) == 1 then  -- a new counter: the day's key expires
  redis.call('EXPIRE', KEYS[4], 691200)
end
return {'queued', ARGV[1]}
