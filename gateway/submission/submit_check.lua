-- KEYS: revoked jti, client record, client window, task window, client's queued set, global
-- queued set, revocation list[, idempotency key]. ARGV: client window ttl, task window ttl,
-- backpressure horizon, reservation score, task id ('' for none), client cap, global cap,
-- client window limit, task window limit[, pending idempotency record, its lease in ms].
-- The pending record is a short lease (gateway.submission.idempotency): a request that dies before its
-- commit leaves a key that lapses within seconds, not one locked for a day. A missing
-- value comes back as nil (None). The client record and the revocation list are read whole
-- (HMGET) and checked against their state MACs here, in Python (``gateway.stores.checks``).
-- A request that passes the checks made here (and has no earlier request under its
-- idempotency key) takes its queue slot for the task id atomically with the count, so a
-- concurrent burst cannot overshoot a cap; one refused afterwards gives it back.
-- $CLIENT_READ and $REVOCATION_READ stand for the hash fields read (gateway.stores.checks),
-- quoted and comma-separated: the gateway fills them in when it loads the script.
local revoked = redis.call('EXISTS', KEYS[1])
local client = redis.call('HMGET', KEYS[2], $CLIENT_READ)
local client_count = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[1], 'NX')
local task_count = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[2], 'NX')
local mine = redis.call('ZCOUNT', KEYS[5], ARGV[3], '+inf')
local everyone = redis.call('ZCOUNT', KEYS[6], ARGV[3], '+inf')
local revocations = redis.call('HMGET', KEYS[7], $REVOCATION_READ)
local earlier = false
if #KEYS == 8 then
  earlier = redis.call('SET', KEYS[8], ARGV[10], 'NX', 'GET', 'PX', ARGV[11])
end
local reserved = 0
if not earlier and revoked == 0 and ARGV[5] ~= ''
    and client_count <= tonumber(ARGV[8]) and task_count <= tonumber(ARGV[9])
    and mine < tonumber(ARGV[6]) and everyone < tonumber(ARGV[7]) then
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[5])
  reserved = 1
end
return {revoked, client, client_count, task_count, mine, everyone, earlier, revocations,
  reserved}
