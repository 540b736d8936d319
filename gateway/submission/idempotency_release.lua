-- KEYS: the reservation. ARGV: the request's pending record.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
