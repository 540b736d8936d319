-- KEYS: stream, head key, turn key. ARGV: expected head, empty-log head, new head, writer
-- id, wants-turn flag, then three MessagePack documents: the field names, the entries (one
-- array of values each) and per entry its attached writes (an array of [command, args...]
-- arrays). Three arguments instead of hundreds: redis-py packs every argument in Python.
-- The old "raw" type carries str and bytes alike (Redis's Lua cmsgpack has no bin type).
-- Reads come first, so a refusal writes nothing. The turn key gives a writer that keeps
-- losing the race a short exclusive turn (others get 'wait'), so no process starves under
-- load. The reply is 'ok', the entries' stream ids, then per entry 1 or the error of the
-- write Redis refused. Attached writes name their keys inside the call: one Redis node.
-- A write {'HELD', key, value} is a precondition, not a command: the entry's later writes
-- run only if key holds value or nothing (a lease still the writer's, or lapsed with no
-- one else holding it); otherwise they are skipped and the entry's outcome is 'lease lost'.
-- ARGV[9], if given: a MessagePack array of [key, field, value] conditions (a fence: HGET
-- key field must equal value, an absent field counting as ''); if one does not hold,
-- nothing is written: {'fenced'}.
if ARGV[9] and ARGV[9] ~= '' then
  for _, want in ipairs(cmsgpack.unpack(ARGV[9])) do
    if (redis.call('HGET', want[1], want[2]) or '') ~= want[3] then return {'fenced'} end
  end
end
local head = redis.call('GET', KEYS[2])
if not head then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'missing'} end
  head = ARGV[2]
end
local turn = redis.call('GET', KEYS[3])
if turn and turn ~= ARGV[4] then return {'wait', head} end
if head ~= ARGV[1] then
  if ARGV[5] == '1' and not turn then redis.call('SET', KEYS[3], ARGV[4], 'PX', 250) end
  return {'conflict', head}
end
local names = cmsgpack.unpack(ARGV[6])
local entries = cmsgpack.unpack(ARGV[7])
local writes = cmsgpack.unpack(ARGV[8])
local reply = {'ok'}
for e = 1, #entries do
  local values = entries[e]
  local fields = {}
  for j = 1, #names do
    fields[2 * j - 1] = names[j]
    fields[2 * j] = values[j]
  end
  reply[#reply + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
redis.call('SET', KEYS[2], ARGV[3])
if turn then redis.call('DEL', KEYS[3]) end
for e = 1, #entries do
  local outcome = 1
  for _, write in ipairs(writes[e]) do
    -- An argument {w, i} is the value of the record's earlier write w at position i.
    for i = 2, #write do
      if type(write[i]) == 'table' then write[i] = writes[e][write[i][1]][write[i][2]] end
    end
    if write[1] == 'HELD' then
      local holder = redis.call('GET', write[2])
      if holder and holder ~= write[3] then
        outcome = 'lease lost'
        break
      end
    else
      local done = redis.pcall(unpack(write))
      if type(done) == 'table' and done.err then
        outcome = done.err
        break
      end
    end
  end
  reply[#reply + 1] = outcome
end
return reply
