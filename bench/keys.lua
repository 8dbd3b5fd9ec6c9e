-- The bench's wrk script: X-API-Key rotated over a file of keys (one a line), one key a request,
-- and the run's figures printed as one JSON line when wrk is done (read by bench/wrk.py).
--
--   wrk ... --script bench/keys.lua URL -- KEYS_FILE OFFSET THREADS
--
-- Thread t of T sends keys OFFSET+t, OFFSET+t+T, ... wrapping at the end of the file, so with one
-- thread the keys go out in file order. Requests are formatted once in init(): the per-request
-- cost in wrk is a table lookup, the same for every contender and every key count.

local threads_seen = 0

function setup(thread)
  thread:set("thread_index", threads_seen)
  threads_seen = threads_seen + 1
end

local prepared = {}
local position, stride

function init(args)
  for key in io.lines(args[1]) do
    prepared[#prepared + 1] = wrk.format(nil, nil, { ["X-API-Key"] = key })
  end
  position = tonumber(args[2]) + thread_index
  stride = tonumber(args[3])
end

function request()
  local chosen = prepared[position % #prepared + 1]
  position = position + stride
  return chosen
end

-- wrk counts a response with status > 399 as errors.status: the "non-2xx" figure (a 3xx would
-- slip through, which is why every point starts with one checked request).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
