-- Change who answers a handed-over conversation, and tell the desk when it changed.
--   take: a person takes it (also from another person); reply: a person's message to the
--   customer, taking the conversation when nobody owns it; release: back to the bot;
--   resolve: closed (the bot answers what comes next).
-- KEYS[1] hand-over record, KEYS[2] open set, KEYS[3] outbox stream, KEYS[4] pickup stats,
-- KEYS[5] staff message dedupe key (reply)
-- ARGV[1] op, ARGV[2] actor, ARGV[3] now (unix s), ARGV[4] conversation key,
-- ARGV[5] status event JSON, ARGV[6] record TTL (s), ARGV[7] reply JSON (reply)
-- Returns {outcome, previous owner}: outcome unknown | duplicate | changed | unchanged.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'unknown', ''}
end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local op = ARGV[1]
if op == 'reply' and not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[6]) then
  return {'duplicate', owner}
end
local changed = false
if op == 'take' or (op == 'reply' and status ~= 'owned') then
  if not (status == 'owned' and owner == ARGV[2]) then
    if status == 'requested' then
      local waited = tonumber(ARGV[3]) - tonumber(redis.call('HGET', KEYS[1], 'requested_at') or ARGV[3])
      local avg = tonumber(redis.call('HGET', KEYS[4], 'avg') or '-1')
      if avg < 0 then avg = waited else avg = 0.7 * avg + 0.3 * waited end
      redis.call('HSET', KEYS[4], 'avg', tostring(avg))
    end
    redis.call('HSET', KEYS[1], 'status', 'owned', 'owner', ARGV[2], 'taken_at', ARGV[3])
    redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
    changed = true
  end
elseif status == 'requested' or status == 'owned' then
  local closed = 'resolved'
  if op == 'release' then closed = 'bot' end
  redis.call('HSET', KEYS[1], 'status', closed, 'owner', '', 'closed_at', ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[4])
  changed = true
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
if changed then
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[5])
end
if op == 'reply' then
  redis.call('XADD', KEYS[3], '*', 'r', ARGV[7])
end
if changed then
  return {'changed', owner}
end
return {'unchanged', owner}
