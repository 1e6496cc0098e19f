-- Pass a message to the people who have its conversation instead of answering it: note it as
-- the conversation's latest message, queue it for the desk (once) and ack the entry.
-- Returns 0 (answer it normally) when the conversation is not with people any more, or when
-- this very message handed it over.
-- KEYS[1] hand-over record, KEYS[2] held marker, KEYS[3] outbox stream, KEYS[4] inbound stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] ticket id, ARGV[4] desk event JSON, ARGV[5] TTL (s),
-- ARGV[6] message id, ARGV[7] reply routing JSON
local status = redis.call('HGET', KEYS[1], 'status')
if (status ~= 'requested' and status ~= 'owned') or redis.call('HGET', KEYS[1], 'ticket') == ARGV[3] then
  return 0
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[5]) then
  redis.call('HSET', KEYS[1], 'message_id', ARGV[6], 'reply_to', ARGV[7])
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[4])
end
redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[4], ARGV[2])
return 1
