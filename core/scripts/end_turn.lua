-- End (or renew) a conversation's turn that stored no reply, if the turn is still ours.
-- KEYS[1] the conversation's burst list, KEYS[2] its turn lock, KEYS[3...] held markers of
-- the messages passed to people with this turn
-- ARGV[1] burst messages to drop ('0': none), ARGV[2] lock token, ARGV[3] held marker TTL (s),
-- ARGV[4] renew the lock for this many ms instead of ending the turn ('0': end it)
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1
end
local dropped = tonumber(ARGV[1])
if dropped > 0 then
  redis.call('LTRIM', KEYS[1], dropped, -1)
end
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[3])
end
redis.call('DEL', KEYS[2])
return 1
