-- Usage flusher: the counters of many keys in one call, with Redis's clock read at the same
-- instant. Keys are read in order until `budget` fields have been read, so a backlog of long
-- hashes (after a database outage) never holds Redis for long; the caller reads the rest next.
-- KEYS[1..n]  usage hashes (minute epoch seconds -> cumulative count)
-- ARGV[1]     budget: the number of fields after which no further key is read
-- Returns {clock seconds, hash of KEYS[1], ..., hash of KEYS[k]} with 1 <= k <= n, each hash
-- one string 'minute count minute count ...' ('' when it is gone): a string per key costs
-- Redis and the client less than a nested list.
-- On a Redis Cluster, the caller sends one slot's keys per call.
local budget = tonumber(ARGV[1])
local replies = {tonumber(redis.call('TIME')[1])}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  replies[i + 1] = table.concat(fields, ' ')
  budget = budget - #fields
  if budget <= 0 then break end
end
return replies
