-- Usage flusher: drop minutes that are stored and over, each only if it still holds the count
-- that was stored (a late hand-over of deferred usage into that minute is then kept).
-- KEYS[1..n]  usage hashes
-- ARGV        per key in order: the number of its minutes m, then m minute, count pairs
-- Returns the number of minutes dropped. On a Redis Cluster, the caller sends one slot's keys
-- per call.
local dropped, at = 0, 1
for _, key in ipairs(KEYS) do
  local last = at + 2 * tonumber(ARGV[at])
  for i = at + 1, last, 2 do
    if redis.call('HGET', key, ARGV[i]) == ARGV[i + 1] then
      dropped = dropped + redis.call('HDEL', key, ARGV[i])
    end
  end
  at = last + 1
end
return dropped
