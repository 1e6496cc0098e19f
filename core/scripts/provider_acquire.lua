-- Take one call's share of the LLM provider's limits, for every process at once: a request
-- (requests/min), its estimated tokens (tokens/min) and a concurrency slot (a lease).
-- Rates are scaled by the adaptive factor (1.0 = the provider's full limit).
-- KEYS[1] request TAT, KEYS[2] token TAT, KEYS[3] lease set, KEYS[4] factor
-- ARGV[1] requests/min (0 = none), ARGV[2] tokens/min (0 = none), ARGV[3] concurrency (0 = none),
-- ARGV[4] estimated tokens, ARGV[5] lease id, ARGV[6] lease TTL (ms), ARGV[7] burst (ms)
-- Returns 0 when taken (TATs advanced, lease held), else the milliseconds to wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local factor = tonumber(redis.call('GET', KEYS[4]) or '1')
local rpm, tpm, slots = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local burst = tonumber(ARGV[7])
local wait = 0
local tats = {}
local limits = {{KEYS[1], rpm, 1}, {KEYS[2], tpm, tonumber(ARGV[4])}}
for i, limit in ipairs(limits) do
  if limit[2] > 0 then
    local cost = limit[3] * 60000 / (limit[2] * factor)
    local tat = tonumber(redis.call('GET', limit[1]) or now)
    if tat < now then tat = now end
    if tat - burst > now and tat - burst - now > wait then wait = tat - burst - now end
    tats[i] = tat + cost
  end
end
if slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= slots and wait < 20 then wait = 20 end
end
if wait > 0 then
  return math.ceil(wait)
end
for i, limit in ipairs(limits) do
  if tats[i] then
    redis.call('SET', limit[1], tostring(tats[i]), 'PX', math.ceil(tats[i] - now) + 60000)
  end
end
if slots > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]) * 2)
end
return 0
