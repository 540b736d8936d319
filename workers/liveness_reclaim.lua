-- KEYS: in-flight holders, unacked hash, unacked index, queue.
-- ARGV: tag, the lapsed holder's token, the in-flight record as read, the message to push.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
