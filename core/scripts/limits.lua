-- Admission limits shared by admit.lua and direct.lua (this text is put in front of theirs).

-- The sender's flood limit (GCRA: `interval` ms apart on average, `tolerance` ms of burst).
-- Returns nil when there is no limit, false when the message is over it, else the sender's
-- next due time to store (with note_flood) once the message is taken.
local function flood_due(state_key, now_ms, interval, tolerance)
  if interval <= 0 then
    return nil
  end
  local tat = math.max(tonumber(redis.call('GET', state_key) or 0), now_ms)
  if tat - now_ms > tolerance then
    return false
  end
  return tat + interval
end

local function note_flood(state_key, due, now_ms)
  if due then
    redis.call('SET', state_key, tostring(due), 'PX', math.ceil(due - now_ms) + 1)
  end
end

-- Refuse a message over a limit: it is deduped (a gateway sending it again hears the same),
-- not queued, and gets `notice` as its one reply when it is the first refused this window
-- (`marker`, set for `window` s); later ones get no reply.
local function refuse(dedupe_key, ticket, dedupe_ttl, marker, window, reply_key, notice,
                      reply_ttl, outbox, reason)
  redis.call('SET', dedupe_key, ticket, 'EX', dedupe_ttl)
  if redis.call('SET', marker, ticket, 'NX', 'EX', window) then
    redis.call('SET', reply_key, notice, 'EX', reply_ttl)
    redis.call('XADD', outbox, '*', 'r', notice)
    return {'throttled', ticket, '1', reason}
  end
  return {'throttled', ticket, '0', reason}
end
