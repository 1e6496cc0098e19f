-- Hand a conversation to people, once: create its record, index its ticket, notify the desk.
-- Nothing happens when this ticket escalated it before (a message processed twice) or when
-- people already have the conversation.
-- KEYS[1] hand-over record, KEYS[2] open set, KEYS[3] outbox stream, KEYS[4] ticket index
-- ARGV[1] ticket id, ARGV[2] now (unix s), ARGV[3] conversation key, ARGV[4] desk event JSON,
-- ARGV[5] TTL (s), ARGV[6..] field, value pairs of the record
local status = redis.call('HGET', KEYS[1], 'status')
if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] or status == 'requested' or status == 'owned' then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'requested', 'ticket', ARGV[1], 'requested_at', ARGV[2],
  unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5])
redis.call('XADD', KEYS[3], '*', 'd', ARGV[4])
return 1
