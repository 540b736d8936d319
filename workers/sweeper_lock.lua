-- KEYS: the sweep lock. ARGV: this sweeper's holder id, the lock's lifetime (ms).
-- The lock holder may take it again (it keeps sweeping); anyone else waits for it to expire.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
