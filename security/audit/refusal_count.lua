-- KEYS: window hash, open-windows set. ARGV: window, group id, group JSON, reason, now,
-- max groups, max reasons, ttl. Reply: the group's count in this window (1: its first).
local g, desc = ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[1], g .. '|n') == 0 then
  local groups = tonumber(redis.call('HGET', KEYS[1], '#groups') or '0')
  if groups >= tonumber(ARGV[6]) then g, desc = 'overflow', '["refusal.overflow","*",""]' end
end
local n = redis.call('HINCRBY', KEYS[1], g .. '|n', 1)
if n == 1 then
  redis.call('HINCRBY', KEYS[1], '#groups', 1)
  redis.call('HSET', KEYS[1], g .. '|d', desc, g .. '|f', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
redis.call('HSET', KEYS[1], g .. '|l', ARGV[5])
local rf = g .. '|r|' .. ARGV[4]
if redis.call('HEXISTS', KEYS[1], rf) == 0 then
  if tonumber(redis.call('HGET', KEYS[1], g .. '|rc') or '0') >= tonumber(ARGV[7]) then
    rf = g .. '|r|other'
  else
    redis.call('HINCRBY', KEYS[1], g .. '|rc', 1)
  end
end
redis.call('HINCRBY', KEYS[1], rf, 1)
if n == 1 and g == 'overflow' then return 0 end
return n
