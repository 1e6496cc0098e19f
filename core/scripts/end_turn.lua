-- End (or renew) a conversation's turn that stored no reply, if the turn is still ours.
-- KEYS[1] the conversation's burst list, KEYS[2] its turn lock, KEYS[3] its acknowledged
-- marker, KEYS[4...] held markers of the other messages passed to people with this turn
-- ARGV[1] lock token, ARGV[2] renew the lock for this many ms instead of ending the turn
-- ('0': end it), ARGV[3] held marker TTL (s), ARGV[4] '1' when the messages were passed to
-- people, ARGV[5...] their burst items
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if ARGV[2] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if ARGV[4] == '1' then  -- passed to people: people answer now, not the bot
  for i = 5, #ARGV do
    redis.call('LREM', KEYS[1], 1, ARGV[i])
  end
  for i = 4, #KEYS do
    redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[3])
  end
  redis.call('DEL', KEYS[3])
end
redis.call('DEL', KEYS[2])
return 1
