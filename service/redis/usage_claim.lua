-- Usage flusher: claim the dirty set, merged into a processing set a dead flusher left behind.
-- KEYS[1]  flush lock   KEYS[2]  dirty set   KEYS[3]  processing set
-- ARGV[1]  the caller's lock token
-- Returns every key id to flush, or nil when the lock is not the caller's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[2])
    redis.call('DEL', KEYS[2])
  else
    redis.call('RENAME', KEYS[2], KEYS[3])
  end
end
return redis.call('SMEMBERS', KEYS[3])
