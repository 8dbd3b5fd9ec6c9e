-- Usage flusher: release the flush lock if still the caller's; a holder whose lock expired
-- touches nothing.
-- KEYS[1]  flush lock   KEYS[2]  processing set
-- ARGV[1]  the caller's lock token   ARGV[2]  '1': the flush is complete, the processing set goes
-- Returns 1 when the lock was released, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
return redis.call('DEL', KEYS[1])
