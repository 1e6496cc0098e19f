-- Hand a conversation to people, once: create its record, index its ticket, notify the desk.
-- Nothing happens when this ticket escalated it before (a message processed twice) or when
-- people already have the conversation. Within the interval after a new hand-over was posted,
-- another escalation does not post again: it reopens the closed hand-over in its thread (a
-- status event), or does nothing when no record is left (forgotten: -1).
-- KEYS[1] hand-over record, KEYS[2] open set, KEYS[3] outbox stream, KEYS[4] ticket index,
-- KEYS[5] the conversation's escalation marker
-- ARGV[1] ticket id, ARGV[2] now (unix s), ARGV[3] conversation key, ARGV[4] desk event JSON,
-- ARGV[5] TTL (s), ARGV[6] interval (s, 0: none), ARGV[7] reopening status event JSON,
-- ARGV[8..] field, value pairs of the record
-- Returns 1 (posted), 2 (reopened), 0 (people have it already) or -1 (posted lately, forgotten
-- since: nothing done).
local status = redis.call('HGET', KEYS[1], 'status')
if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] or status == 'requested' or status == 'owned' then
  return 0
end
local outcome = 1
if tonumber(ARGV[6]) > 0 and redis.call('EXISTS', KEYS[5]) == 1 then
  if not status then
    return -1
  end
  outcome = 2
else
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'status', 'requested', 'ticket', ARGV[1], 'requested_at', ARGV[2],
  'owner', '', unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5])
if outcome == 2 then
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[7])
else
  if tonumber(ARGV[6]) > 0 then
    redis.call('SET', KEYS[5], '1', 'EX', ARGV[6])
  end
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[4])
end
return outcome
