-- Usage flusher: one chunk of keys' counters in one call, with Redis's clock read before them.
-- KEYS[1..n]  usage hashes (minute epoch seconds -> cumulative count)
-- Returns {clock seconds, fields of KEYS[1], ..., fields of KEYS[n]}, each fields a flat
-- {minute, count, minute, count, ...} list (empty when the hash is gone).
-- The keys span hash slots: this script is for a single Redis server, not a Cluster.
local replies = {tonumber(redis.call('TIME')[1])}
for i, key in ipairs(KEYS) do
  replies[i + 1] = redis.call('HGETALL', key)
end
return replies
