-- KEYS: open-windows set, window hash, closing hash, lock. ARGV: window, token, lock ms.
-- Moves the window's counters aside (late refusals start a fresh hash, summarised later)
-- and returns them; false if another process holds the window. A closing hash left by a
-- process that died mid-way is returned again once its lock lapsed: nothing is lost.
if not redis.call('SET', KEYS[4], ARGV[2], 'NX', 'PX', ARGV[3]) then return false end
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[3])
end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
return redis.call('HGETALL', KEYS[3])
