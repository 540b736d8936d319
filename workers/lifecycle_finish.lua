-- KEYS: task record, done flag, the seal's marker bucket, in-flight holders, then the keys
-- to delete (vault entries). ARGV: state, now, error ('' = none), done ttl, marker field,
-- delivery tag, ownership token. Reply: 1 written, 0 not held (workers.lifecycle).
-- Fenced (tag ARGV[6], token ARGV[7]): only while that token still holds the delivery in
-- the in-flight holders (KEYS[4]); else nothing is written (0).
if ARGV[7] and ARGV[7] ~= '' and redis.call('HGET', KEYS[4], ARGV[6]) ~= ARGV[7] then
  return 0
end
if ARGV[1] == 'succeeded' then redis.call('SET', KEYS[2], '1', 'EX', ARGV[4]) end
-- A final state is also the seal's final marker (KEYS[3], ARGV[5]): create-only, first
-- final state wins, and only in a bucket the gateway created (with its expiry).
if ARGV[5] ~= '' and ARGV[1] ~= 'retried' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSETNX', KEYS[3], ARGV[5], ARGV[1])
end
for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[1] == 'retried' then
    redis.call('HSET', KEYS[1], 'state', 'retried')
  else
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_at', ARGV[2])
  end
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
end
return 1
