-- KEYS: task record, revoked flag, owner's queued set, global queued set, the seal's marker
-- bucket. ARGV: revoked flag ttl, cancellable ('1'/'0'), task id, marker field ('' = none),
-- bucket expiry, then the finished states. Reply: revoked, cancelling, running, missing or
-- finished:<state>.
-- Decides on the state Redis holds now, not on the record the route read a moment ago,
-- atomically with the worker's start gate (also a script): whichever runs first wins. A
-- task not started yet is revoked outright (its gate will find the revocation); a started
-- one is marked "cancelling" if its declaration allows, and a worker stops it; a finished
-- one is left alone. "retried" waits for its next run like a queued task.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
for i = 6, #ARGV do
  if state == ARGV[i] then return 'finished:' .. state end
end
if state == 'started' or state == 'cancelling' then
  if ARGV[2] ~= '1' then return 'running' end
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
  redis.call('HSET', KEYS[1], 'state', 'cancelling')
  return 'cancelling'
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'revoked')
-- Final from a worker's point of view: the seal's create-only marker (KEYS[5], ARGV[4]),
-- which a worker can neither delete nor expire (tg:revoked:task it could delete).
if ARGV[4] ~= '' then
  redis.call('HSETNX', KEYS[5], ARGV[4], 'revoked')
  redis.call('EXPIREAT', KEYS[5], ARGV[5])
end
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
return 'revoked'
