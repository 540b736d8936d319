-- KEYS: stream, base key. ARGV: last archived id, its seq, its mac, next id, base value.
-- Trims only if the last archived entry is still there unchanged: a log rewritten since
-- it was read is left alone (and reported).
local last = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #last == 0 then return -1 end
local fields, seq, mac = last[1][2], nil, nil
for i = 1, #fields, 2 do
  if fields[i] == 'seq' then seq = fields[i + 1] end
  if fields[i] == 'mac' then mac = fields[i + 1] end
end
if seq ~= ARGV[2] or mac ~= ARGV[3] then return -2 end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '=', ARGV[4])
redis.call('SET', KEYS[2], ARGV[5])
return trimmed
