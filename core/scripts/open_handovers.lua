-- The number of a lane's open hand-overs. Members whose record expired (7 days after its
-- last change) or is not open any more are dropped on the way: a record's TTL cannot take
-- its conversation out of the set.
-- KEYS[1] open set
-- ARGV[1] the lane's hand-over record prefix (a member's record is the prefix and the member)
for _, conversation in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local status = redis.call('HGET', ARGV[1] .. conversation, 'status')
  if status ~= 'requested' and status ~= 'owned' then
    redis.call('ZREM', KEYS[1], conversation)
  end
end
return redis.call('ZCARD', KEYS[1])
