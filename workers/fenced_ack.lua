-- KEYS: in-flight holders, kombu's unacked hash, its index. ARGV: tag, token ('' = the
-- caller holds no token for it: kombu's own semantics). Removes the delivery from Redis
-- unless another holder (another delivery of the same message) holds it now: 1 if removed.
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and ARGV[2] ~= '' and holder ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if holder then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
