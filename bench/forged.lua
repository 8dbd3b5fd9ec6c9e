-- Forged-key flood for bench/hostile.py: well-formed keys never issued, read from a file (one a
-- line), each request with the next key and an X-Forwarded-For address of its own, so that a
-- per-address limit never trips and every key reaches the verifier's lookups.
--
--   wrk ... --script bench/forged.lua URL -- KEYS_FILE

local keys = {}
local position = 0

function init(args)
  for key in io.lines(args[1]) do
    keys[#keys + 1] = key
  end
end

function request()
  position = position + 1
  local address = string.format("10.%d.%d.%d", math.floor(position / 65536) % 256,
    math.floor(position / 256) % 256,
    position % 256)
  return wrk.format(nil, nil, { ["X-API-Key"] = keys[position % #keys + 1],
    ["X-Forwarded-For"] = address })
end

function done(summary, latency, requests)
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"non_2xx":%d}\n',
    summary.requests, summary.duration, summary.errors.status))
end
