-- Generic cell rate algorithm over several limits at once (a chat's and the whole bot's, say):
-- the call is allowed only when every limit allows it, and then counts against all of them.
-- Time is the Redis server's, so every process on every machine shares one clock.
-- KEYS[i] one key per limit
-- ARGV[2i-1] emission interval (ms) and ARGV[2i] burst tolerance (ms) of KEYS[i]
-- Returns 0 when allowed (and recorded), else the milliseconds to wait before trying again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local wait = 0
local next_tat = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allowed_at = tat - tolerance
  if allowed_at > now and allowed_at - now > wait then wait = allowed_at - now end
  next_tat[i] = tat + interval
end
if wait > 0 then
  return math.ceil(wait)
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tostring(next_tat[i]), 'PX', math.ceil(next_tat[i] - now) + 1000)
end
return 0
