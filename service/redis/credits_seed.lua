-- A key's credits as PostgreSQL holds them, put back after Redis lost them (restart, flush);
-- a state already there (a concurrent seed, or requests since) is kept.
-- KEYS[1]  the key's credits hash   ARGV[1]  remaining   ARGV[2]  epoch
-- ARGV[3]  start of the period of the last refill (epoch seconds)
-- Returns 1 when seeded, 0 when a state was there.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'e', ARGV[2], 't', ARGV[3])
return 1
