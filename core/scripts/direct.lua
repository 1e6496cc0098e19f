-- Answer a message at once, without the LLM (commands, unsupported content, templates):
-- dedupe, store its one reply and hand it to the outbox, atomically.
-- KEYS[1] dedupe key, KEYS[2] reply key, KEYS[3] outbox stream, KEYS[4] today's counters,
-- KEYS[5] the conversation's burst list, KEYS[6] its turn lock and KEYS[7] its hand-over record
-- (optional: then answer only when nothing of the conversation is waiting or being answered,
-- so no reply overtakes another, and when no person has the conversation)
-- ARGV[1] ticket id, ARGV[2] dedupe TTL (s), ARGV[3] reply JSON, ARGV[4] reply TTL (s),
-- ARGV[5] reply source (counted)
local existing = redis.call('GET', KEYS[1])
if existing then
  return {'duplicate', existing}
end
if KEYS[5] then
  local handover = redis.call('HGET', KEYS[7], 'status')
  if redis.call('LLEN', KEYS[5]) > 0 or redis.call('EXISTS', KEYS[6]) == 1
      or handover == 'requested' or handover == 'owned' then
    return {'busy', ''}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('XADD', KEYS[3], '*', 'r', ARGV[3])
if redis.call('HINCRBY', KEYS[4], ARGV[5], 1) == 1 then  -- a new counter: the day's key expires
  redis.call('EXPIRE', KEYS[4], 691200)
end
return {'queued', ARGV[1]}
