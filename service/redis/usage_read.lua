-- Usage flusher: the counters of many keys in one call, with Redis's clock read at the same
-- instant. Keys are read in order until `budget` fields have been read, so a backlog of long
-- hashes (after a database outage) never holds Redis for long; the caller reads the rest next.
-- KEYS[1..n]  usage hashes (minute epoch seconds -> cumulative count)
-- ARGV[1]     budget: the number of fields after which no further key is read
-- Returns {clock seconds, fields of KEYS[1], ..., fields of KEYS[k]} with 1 <= k <= n, each
-- fields a flat {minute, count, minute, count, ...} list (empty when the hash is gone).
-- The keys span hash slots: this script is for a single Redis server, not a Cluster.
local budget = tonumber(ARGV[1])
local replies = {tonumber(redis.call('TIME')[1])}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  replies[i + 1] = fields
  budget = budget - #fields
  if budget <= 0 then break end
end
return replies
