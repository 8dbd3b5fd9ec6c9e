-- One rate-limit check for one API key against all its limits and its credits, atomic: every
-- limit's GCRA decision and the credits left, then (only when the credits suffice and every
-- enforced limit admits) each limit and the credits charged `cost` units and the usage counted.
-- The limits mirror `check` in service/ratelimit/gcra.py (integer microseconds; time from
-- Redis, shared by all hosts).
-- KEYS[1]      usage hash: minute epoch seconds -> admitted requests in that minute
-- KEYS[2..n+1] each limit's theoretical arrival time (string, microseconds)
-- KEYS[n+2]    only when ARGV[3] >= 0: the credits hash {r: remaining, e: epoch, t: the start
--              of the period of the last refill (epoch seconds)}
-- ARGV[1]  cost (units; 0 reports without charging)
-- ARGV[2]  usage TTL (s), 0 for a limit that records no usage (failed verifications per address)
-- ARGV[3]  credits epoch, -1 for a key without credits   ARGV[4]  credits at that epoch
-- ARGV[5]  refill amount   ARGV[6]  refill period (s), 0 for none
-- ARGV[7..] per limit: emission interval (us), burst tolerance (us), 1 if shadow else 0
-- Returns {status, binding limit (1-based), remaining, reset (us), retry after (us, -1: never at
-- this cost), 1 if a shadow limit would have refused, credits left (-1: none)}; status 1
-- admitted, 0 refused by a limit, 2 refused for want of credits, 3 no credits state (the caller
-- seeds it from PostgreSQL and asks again: never invented from a possibly stale record).
local clock = redis.call('TIME')
local seconds = tonumber(clock[1])
local now = seconds * 1000000 + tonumber(clock[2])
local cost = tonumber(ARGV[1])
local epoch = tonumber(ARGV[3])
local n = #KEYS - 1
local credits, credits_key, refilled, refill_wait = -1, nil, 0, -1
local stored_refilled, is_new_epoch = 0, false
if epoch >= 0 then
  n = n - 1
  credits_key = KEYS[#KEYS]
  local state = redis.call('HMGET', credits_key, 'r', 'e', 't')
  if not state[1] then
    return {3, 1, 0, 0, 0, 0, -1}
  end
  credits, refilled = tonumber(state[1]), tonumber(state[3])
  stored_refilled = refilled
  if tonumber(state[2]) < epoch then  -- an admin set the credits since
    credits, refilled, is_new_epoch = tonumber(ARGV[4]), seconds, true
  else
    epoch = tonumber(state[2])
  end
  local period = tonumber(ARGV[6])
  if period > 0 then
    local start = seconds - seconds % period
    if start > refilled then
      credits, refilled = tonumber(ARGV[5]), start
    end
    refill_wait = (start + period - seconds) * 1000000 - tonumber(clock[2])
  end
  if credits < cost then
    return {2, 1, 0, 0, refill_wait, 0, credits}
  end
end
local new_tats = {}
local binding, remaining, reset, retry = 1, 0, 0, 0
local refused, shadow_refused = false, 0
local best_left, best_limit = nil, nil
for i = 1, n do
  local at = 4 + 3 * i
  local emission, tolerance = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local shadow = ARGV[at + 2] == '1'
  local limit = tolerance / emission
  local tat = tonumber(redis.call('GET', KEYS[i + 1])) or now
  if tat < now then
    tat = now
  end
  local new_tat = tat + emission * cost
  local allow_at = new_tat - tolerance
  if now < allow_at then
    if shadow then
      shadow_refused = 1
    else
      local wait = allow_at - now
      if cost > limit then
        wait = -1
      end
      if not refused or (retry ~= -1 and (wait == -1 or wait > retry)) then
        binding, remaining, reset, retry = i, 0, tat - now, wait
      end
      refused = true
    end
  else
    if cost > 0 then
      new_tats[i] = new_tat
    end
    local left = math.floor((now - allow_at) / emission)
    -- left / limit below the best so far (a limit set always has an enforced limit).
    if not shadow and (best_left == nil or left * best_limit < best_left * limit) then
      best_left, best_limit = left, limit
      if not refused then
        binding, remaining, reset = i, left, new_tat - now
      end
    end
  end
end
if refused then
  return {0, binding, 0, reset, retry, shadow_refused, credits}
end
if credits_key and cost > 0 then
  credits = credits - cost
  if is_new_epoch or refilled ~= stored_refilled then
    redis.call('HSET', credits_key, 'r', string.format('%d', credits), 'e', epoch,
      't', string.format('%d', refilled))
  else  -- the usual case: only the count moved
    redis.call('HSET', credits_key, 'r', string.format('%d', credits))
  end
end
for i, new_tat in pairs(new_tats) do
  -- string.format: Lua's default number-to-string keeps 14 digits, too few for microseconds.
  redis.call('SET', KEYS[i + 1], string.format('%d', new_tat),
    'PX', string.format('%d', math.ceil((new_tat - now) / 1000)))
end
if ARGV[2] ~= '0' and cost > 0 then
  local minute = string.format('%d', seconds - seconds % 60)
  if redis.call('HINCRBY', KEYS[1], minute, 1) == 1 then
    -- A new field: refreshing the TTL once per key and minute keeps it ~2 days past last use.
    redis.call('EXPIRE', KEYS[1], ARGV[2])
  end
end
return {1, binding, remaining, reset, 0, shadow_refused, credits}
