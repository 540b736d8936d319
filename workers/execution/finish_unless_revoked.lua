-- KEYS: revoked flag, task record, done flag, the seal's marker bucket, in-flight holders,
-- then the keys to delete (vault entries). ARGV: now, done ttl, marker field ('' = none),
-- delivery tag, ownership token. Reply: 1 succeeded, 0 revoked, 2 not held (workers.execution.cancel).
-- Fenced (tag ARGV[4], token ARGV[5]): only while that token holds the delivery in the
-- in-flight holders (KEYS[5]); else nothing is written (2; workers.execution.fencing).
if ARGV[5] and ARGV[5] ~= '' and redis.call('HGET', KEYS[5], ARGV[4]) ~= ARGV[5] then
  return 2
end
local revoked = redis.call('EXISTS', KEYS[1]) == 1
for i = 6, #KEYS do redis.call('DEL', KEYS[i]) end
local state = 'revoked'
if not revoked then
  state = 'succeeded'
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
end
-- The seal's final marker (KEYS[4], ARGV[3]), as Lifecycle.finish writes it.
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSETNX', KEYS[4], ARGV[3], state)
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'state', state, 'finished_at', ARGV[1])
end
if revoked then return 0 end
return 1
