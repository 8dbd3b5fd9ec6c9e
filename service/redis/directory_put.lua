-- Key directory: store one key's entry unless Redis already holds the same or a newer version,
-- so a late writer (a worker filling from a read that a revoke overtook) never rolls a key back.
-- KEYS[1]  the entry (string: "<version>|<record JSON>")
-- ARGV[1]  version   ARGV[2]  record JSON   ARGV[3]  TTL (s)
-- Returns 1 when stored, 0 when a version at least as new was already there.
local current = redis.call('GET', KEYS[1])
if current then
  local held = tonumber(string.match(current, '^(%d+)|'))
  if held and held >= tonumber(ARGV[1]) then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1
