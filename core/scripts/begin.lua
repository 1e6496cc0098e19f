-- Begin a conversation's turn: one worker in any process answers a conversation at a time.
-- KEYS[1] reply key of the entry's ticket, KEYS[2] the conversation's turn lock,
-- KEYS[3] its burst list
-- ARGV[1] lock token, ARGV[2] lock TTL (ms), ARGV[3] most messages in one turn
-- Returns {'done'} when the message was answered already (with an earlier burst),
-- {'busy', ms} while another worker has the turn, else {'turn', item...}: the conversation's
-- unanswered messages, oldest first.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'done'}
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then
    return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local turn = redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1)
table.insert(turn, 1, 'turn')
return turn
