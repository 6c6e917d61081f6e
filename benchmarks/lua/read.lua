-- wrk script: GET each path of a file (one per line, e.g. /fhir/Patient/123) in turn.
-- usage: wrk -t1 -c8 -d10s -s read.lua http://127.0.0.1:PORT -- paths.txt
local paths = {}
local headers = {["Accept"] = "application/fhir+json"}
local token = os.getenv("CARERECORD_BENCH_TOKEN")  -- the harness's system token
if token then headers["Authorization"] = "Bearer " .. token end
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
