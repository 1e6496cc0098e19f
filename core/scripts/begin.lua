-- Begin a conversation's turn: one worker in any process answers a conversation at a time.
-- KEYS[1] reply key of the entry's ticket, KEYS[2] its held marker, KEYS[3] the
-- conversation's turn lock, KEYS[4] its burst list
-- ARGV[1] lock token, ARGV[2] lock TTL (ms), ARGV[3] most burst items to read,
-- ARGV[4] the reply key prefix (a ticket's reply key is the prefix and the ticket id)
-- Returns {'done'} when the message was answered (or passed to people) already,
-- {'busy', ms} while another worker has the turn, else {'turn', item...}: the conversation's
-- unanswered messages, oldest first. Items answered already (dead-lettered alone, say) are
-- dropped from the list on the way.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return {'done'}
end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[3]) ~= ARGV[1] then
    return {'busy', tostring(redis.call('PTTL', KEYS[3]))}
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
local turn = {'turn'}
for _, item in ipairs(redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)) do
  local ticket = string.match(item, '^[^\31]*')
  if redis.call('EXISTS', ARGV[4] .. ticket) == 1 then
    redis.call('LREM', KEYS[4], 1, item)
  else
    table.insert(turn, item)
  end
end
return turn
