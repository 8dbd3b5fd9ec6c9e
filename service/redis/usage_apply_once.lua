-- Deferred usage: one batch of counts made while Redis was unreachable, applied at most once.
-- KEYS[1]  usage hash: minute epoch seconds -> admitted requests in that minute
-- KEYS[2]  batch marker (same hash tag): set once the batch is applied
-- ARGV[1]  TTL (s) of both   ARGV[2..]  minute, count pairs
-- Returns 1, whether the batch was applied now or before.
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  for i = 2, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1
