-- Find a cached answer for a message in one round trip: the conversation's own, else the
-- shared one; with no shared answer yet, claim the single flight (or learn another has it).
-- KEYS[1] conversation cache key, KEYS[2] shared cache key, KEYS[3] flight key (both optional)
-- ARGV[1] flight TTL (s)
-- Returns {"conversation"|"shared", text}, or {"lead"}, {"follow"}, {"miss"} (nothing shared).
local text = redis.call('GET', KEYS[1])
if text then
  return {'conversation', text}
end
if not KEYS[2] then
  return {'miss'}
end
text = redis.call('GET', KEYS[2])
if text then
  return {'shared', text}
end
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then
  return {'lead'}
end
return {'follow'}
