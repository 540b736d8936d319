-- KEYS: the dead-letter record, the dead-letter index, the in-flight holders, then the
-- task's vault entries (kept as long as the dead letter). ARGV: retention (seconds),
-- dead_at (the index score), task id, delivery tag, ownership token, then the record's
-- field/value pairs. Reply: 1 written, 0 not held (nothing written).
-- Fenced (tag ARGV[4], token ARGV[5]): only while that token still holds the delivery in
-- the in-flight holders (KEYS[3]); an empty token writes unconditionally.
if ARGV[5] ~= '' and redis.call('HGET', KEYS[3], ARGV[4]) ~= ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
for i = 4, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return 1
