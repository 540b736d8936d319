-- The start gate of workers.lifecycle.Lifecycle: its KEYS and ARGV are laid out by
-- workers.lifecycle._gate_arguments, its reply read by workers.lifecycle._gate_reply.
-- Revoked (KEYS[1])? Done (KEYS[2])? Usually neither: one EXISTS answers that.
local revoked, done = 0, 0
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  revoked = redis.call('EXISTS', KEYS[1])
  done = redis.call('EXISTS', KEYS[2])
end
-- The seal's final marker (bucket KEYS[9], field ARGV[9]): written create-only when a run
-- of this seal ended for good, in a bucket no worker may delete or expire.
-- marker: 0 no bucket, 1 bucket (final writes may add to it), 2 this seal already ended.
-- One read: the bucket's placeholder field '-' (written with it by the gateway) and ours.
local marker = 0
if ARGV[9] ~= '' then
  local seen = redis.call('HMGET', KEYS[9], '-', ARGV[9])
  if seen[1] then marker = 1 end
  if seen[2] then marker = 2 end
end
-- The task record (KEYS[3]) in one read: owner, state, attempts, runs.
local record = redis.call('HMGET', KEYS[3], 'owner', 'state', 'attempts', 'runs')
local owner = record[1] or ''
redis.call('ZREM', KEYS[4], ARGV[1])
if owner ~= '' then redis.call('ZREM', ARGV[4] .. owner, ARGV[1]) end
-- A delivery the consumer left to this gate (ARGV[6]: its tag; ARGV[7], ARGV[8]: exchange
-- and routing key) goes into kombu's unacked hash and index from the gateway's copy,
-- as kombu's QoS.append writes it: [message, exchange, routing key].
-- Its holder's ownership token (ARGV[11], for tag ARGV[10]) goes into the in-flight holders
-- (KEYS[10]) with it. A delivery the consumer recorded must still be held by that token: if
-- its worker was presumed dead meanwhile and the delivery reclaimed, it is not ours (held 0).
local recorded, held = 0, 1
if ARGV[6] ~= '' then
  local copy = redis.call('GET', KEYS[5])
  if copy then
    redis.call('HSET', KEYS[7], ARGV[6],
      '[' .. copy .. ',' .. cjson.encode(ARGV[7]) .. ',' .. cjson.encode(ARGV[8]) .. ']')
    redis.call('ZADD', KEYS[8], ARGV[2], ARGV[6])
    if ARGV[11] ~= '' then redis.call('HSET', KEYS[10], ARGV[6], ARGV[11]) end
    recorded = 1
  elseif ARGV[11] ~= '' then
    local holder = redis.call('HGET', KEYS[10], ARGV[6])
    if holder and holder ~= ARGV[11] then held = 0 end
  end
elseif ARGV[10] ~= '' and ARGV[11] ~= '' then
  if redis.call('HGET', KEYS[10], ARGV[10]) ~= ARGV[11] then held = 0 end
end
-- A worker holds the message now (kombu's unacked hash until the ack): no longer the
-- sweeper's to re-queue, whatever happens next.
redis.call('DEL', KEYS[5])
-- The audit chain's head, so this worker's next append rarely conflicts (KEYS[6]).
local reply = {revoked, done, owner, redis.call('GET', KEYS[6]) or '', 0, recorded, marker,
  held, 0}
if held == 0 then return reply end
if revoked == 0 and done == 0 and marker < 2 then
  -- Runs of this attempt: a start that finds the same attempt still started follows a run
  -- that was cut off (its process killed, Redis gone mid-run). Once ARGV[5] runs were cut
  -- off, the task is not started again (reply[5] > ARGV[5]; the worker dead-letters it).
  local runs = 1
  -- A record has a state, except one only the sweeper's requeue count made: EXISTS then.
  if record[2] or redis.call('EXISTS', KEYS[3]) == 1 then
    if record[2] == 'started' and record[3] == ARGV[3] then
      runs = (tonumber(record[4]) or 1) + 1
    end
    reply[5] = runs
    if runs > tonumber(ARGV[5]) then return reply end
    redis.call('HSET', KEYS[3], 'state', 'started', 'started_at', ARGV[2], 'attempts', ARGV[3],
      'runs', runs)
    -- Every run of the task, whatever its attempt: the run count the task view shows.
    reply[9] = redis.call('HINCRBY', KEYS[3], 'run_count', 1)
  end
  reply[5] = runs
  -- The task's sealed secrets, in the same round trip (KEYS[11..]).
  for i = 11, #KEYS do reply[#reply + 1] = redis.call('GET', KEYS[i]) end
end
return reply
