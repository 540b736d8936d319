-- KEYS: heartbeats, in-flight holders, unacked hash, unacked index.
-- ARGV: this worker's member, now, lapse (s), the prefix of this process's tokens, the last
-- sequence number it handed out, then the tokens it holds. Renews the deliveries this
-- process holds, drops entries whose delivery is gone, returns [tag, token, ...] of
-- deliveries to hand back: their holder lapsed; or it was an earlier process under this
-- very member (a restarted container keeps its hostname and often its pid: dead for sure);
-- or this process let go of them while Redis was unreachable (an ack or requeue that never
-- arrived). A token numbered after the list was taken is still being recorded: held.
local now, lapse = tonumber(ARGV[2]), tonumber(ARGV[3])
local last, held = tonumber(ARGV[5]), {}
for i = 6, #ARGV do held[ARGV[i]] = true end
local entries = redis.call('HGETALL', KEYS[2])
local alive, lapsed = {}, {}
for i = 1, #entries, 2 do
  local tag, token = entries[i], entries[i + 1]
  local holder = string.match(token, '^(.*)/[^/]*$') or ''
  local mine = string.sub(token, 1, #ARGV[4]) == ARGV[4]
  if redis.call('HEXISTS', KEYS[3], tag) == 0 then
    redis.call('HDEL', KEYS[2], tag)
  elseif mine and (held[token] or (tonumber(string.sub(token, #ARGV[4] + 1)) or 0) > last) then
    redis.call('ZADD', KEYS[4], 'XX', ARGV[2], tag)
  elseif holder == ARGV[1] then
    lapsed[#lapsed + 1] = tag
    lapsed[#lapsed + 1] = token
  else
    if alive[holder] == nil then
      local beat = tonumber(redis.call('ZSCORE', KEYS[1], holder))
      alive[holder] = beat ~= nil and beat >= now - lapse
    end
    if not alive[holder] then
      lapsed[#lapsed + 1] = tag
      lapsed[#lapsed + 1] = token
    end
  end
end
return lapsed
