-- Give back a call's lease, correct its token estimate, and adapt the shared rate factor:
-- cut it on a 429 or when the provider says little is left (at most once per cooldown, so a
-- burst of 429s counts once), raise it slowly after successes.
-- KEYS[1] token TAT, KEYS[2] lease set, KEYS[3] factor, KEYS[4] last cut
-- ARGV[1] lease id, ARGV[2] token correction (actual - estimated), ARGV[3] tokens/min,
-- ARGV[4] outcome: "throttled" | "low" | "ok" | "other", ARGV[5] cooldown (ms),
-- ARGV[6] cut multiplier, ARGV[7] raise step, ARGV[8] lowest factor
-- Returns the factor now in force (as a string).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZREM', KEYS[2], ARGV[1])
local factor = tonumber(redis.call('GET', KEYS[3]) or '1')
local tpm = tonumber(ARGV[3])
local correction = tonumber(ARGV[2])
if tpm > 0 and correction ~= 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat > 0 then
    tat = math.max(now, tat + correction * 60000 / (tpm * factor))
    redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 60000)
  end
end
local outcome = ARGV[4]
if outcome == 'throttled' or outcome == 'low' then
  local last = tonumber(redis.call('GET', KEYS[4]) or '0')
  if now - last >= tonumber(ARGV[5]) then
    factor = math.max(tonumber(ARGV[8]), factor * tonumber(ARGV[6]))
    redis.call('SET', KEYS[3], tostring(factor), 'EX', 3600)
    redis.call('SET', KEYS[4], tostring(now), 'EX', 3600)
  end
elseif outcome == 'ok' and factor < 1 then
  factor = math.min(1, factor + tonumber(ARGV[7]))
  redis.call('SET', KEYS[3], tostring(factor), 'EX', 3600)
end
return tostring(factor)
