-- KEYS: the message copy, kombu's unacked hash, the queue. ARGV: delivery tag, leftmost.
-- A delivery the start gate never recorded (its copy is still there): back in the queue.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local copy = redis.call('GET', KEYS[1])
if not copy then return 0 end
local push = 'RPUSH'
if ARGV[2] == '1' then push = 'LPUSH' end
redis.call(push, KEYS[3], copy)
return 1
