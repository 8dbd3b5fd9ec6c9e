-- One rate-limit hit for one API key, atomic: GCRA decision plus the usage count when admitted.
-- Mirrors service/ratelimit/gcra.py (integer microseconds; time from Redis, shared by all hosts).
-- KEYS[1]  theoretical arrival time (string, microseconds)
-- KEYS[2]  usage hash: minute epoch seconds -> admitted requests in that minute
-- ARGV[1]  emission interval (us)   ARGV[2]  burst tolerance (us)   ARGV[3]  usage TTL (s),
--          0 for a limit that records no usage (failed verifications per client address)
-- Returns {allowed 0|1, remaining, reset (us), retry after (us)}.
local clock = redis.call('TIME')
local seconds = tonumber(clock[1])
local now = seconds * 1000000 + tonumber(clock[2])
local emission = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + emission
local allow_at = new_tat - tonumber(ARGV[2])
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
-- string.format: Lua's default number-to-string keeps 14 digits, too few for microseconds.
redis.call('SET', KEYS[1], string.format('%d', new_tat),
  'PX', string.format('%d', math.ceil((new_tat - now) / 1000)))
if ARGV[3] ~= '0' then
  local minute = string.format('%d', seconds - seconds % 60)
  if redis.call('HINCRBY', KEYS[2], minute, 1) == 1 then
    -- A new field: refreshing the TTL once per key and minute keeps it ~2 days past last use.
    redis.call('EXPIRE', KEYS[2], ARGV[3])
  end
end
return {1, math.floor((now - allow_at) / emission), new_tat - now, 0}
