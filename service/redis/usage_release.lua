-- Usage flusher: release the flush lock if still the caller's; a holder whose lock expired
-- touches nothing. A complete flush goes, with its processing set, and leaves a marker that
-- expires after the interval, so periodic flushes of other processes wait for it.
-- KEYS[1]  flush lock   KEYS[2]  processing set   KEYS[3]  recent-flush marker
-- ARGV[1]  the caller's lock token   ARGV[2]  '1': the flush is complete
-- ARGV[3]  the marker's lifetime (ms)
-- Returns 1 when the lock was released, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
end
return redis.call('DEL', KEYS[1])
