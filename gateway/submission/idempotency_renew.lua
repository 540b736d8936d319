-- KEYS: the reservation. ARGV: the request's pending record, the lease in milliseconds.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
